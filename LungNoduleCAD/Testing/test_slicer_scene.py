"""Scene writing details with hand-made findings: overlapping masks, incremental updates."""

from __future__ import annotations

import numpy as np
import slicer
from LungNoduleCADLib.scene import FindingsScene
from LungNoduleCADLib.storage import SEGMENTATION_FILE, SEGMENTATION_KIND, write_scene_files
from LungNoduleCADLib.volume import add_volume_node_from_ct

from lungcad.ct import CT, Geometry
from lungcad.geometry import voxel_to_world
from lungcad.pipeline import Finding, Thresholds, VoxelMask

GEOMETRY = Geometry.from_arrays(
    (10.0, -20.0, 30.0), (0.8, 0.8, 2.0), np.diag([-1.0, 1.0, -1.0]), (12, 30, 30)
)


def _finding(number: int, start: tuple[int, int, int], size: int, p: float) -> Finding:
    array = np.ones((size, size, size), dtype=bool)
    centre = tuple(s + (size - 1) / 2 for s in start)
    return Finding(
        number,
        tuple(voxel_to_world(centre, GEOMETRY)),
        centre,
        2.0,
        4.0,
        20.0,
        p,
        p,
        VoxelMask(start, array),
    )


def test_overlapping_findings_keep_all_their_voxels_in_the_scene_file(mrml, tmp_path):
    findings = (
        _finding(1, (2, 5, 5), 4, 0.9),
        _finding(2, (4, 7, 7), 4, 0.6),
        _finding(3, (2, 20, 20), 3, 0.3),
    )
    volume = add_volume_node_from_ct(mrml.scene, CT(np.zeros((12, 30, 30), np.int16), GEOMETRY))
    nodes = FindingsScene(mrml.scene, volume).show(findings, GEOMETRY, Thresholds())
    assert nodes.segmentation.GetSegmentation().GetNumberOfLayers() == 3, "one per segment"
    before = mrml.scene.GetNumberOfNodes()
    written = write_scene_files(nodes, tmp_path)
    assert mrml.scene.GetNumberOfNodes() == before, "writing adds no node"
    assert written[SEGMENTATION_KIND] == tmp_path / "slicer" / SEGMENTATION_FILE
    assert nodes.segmentation.GetSegmentation().GetNumberOfLayers() == 3, "the scene's is kept"
    loaded = mrml.segmentations.LoadSegmentationFromFile(str(written[SEGMENTATION_KIND]), False)
    segmentation = loaded.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 3
    assert segmentation.GetNumberOfLayers() == 2, "only the overlapping finding needs its own"
    for index, finding in enumerate(findings):
        voxels = slicer.util.arrayFromSegmentBinaryLabelmap(
            loaded, segmentation.GetNthSegmentID(index), volume
        )
        np.testing.assert_array_equal(voxels > 0, finding.mask.paste(GEOMETRY.shape_irc))


def test_updates_reuse_segments_of_surviving_findings(mrml):
    volume = add_volume_node_from_ct(mrml.scene, CT(np.zeros((12, 30, 30), np.int16), GEOMETRY))
    writer = FindingsScene(mrml.scene, volume)
    a, b, c = (
        _finding(1, (1, 1, 1), 2, 0.9),
        _finding(2, (5, 5, 5), 2, 0.5),
        _finding(3, (8, 20, 20), 2, 0.1),
    )
    nodes = writer.show((a, b, c), GEOMETRY, Thresholds())
    segmentation = nodes.segmentation.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(i) for i in range(3)]
    images = [segmentation.GetNthSegment(i).GetRepresentation("Binary labelmap") for i in range(3)]
    # b disappears, c is renumbered 2: c keeps its segment and labelmap, its name follows
    c2 = Finding(
        2,
        c.center_lps,
        c.center_irc,
        c.diameter_mm,
        c.volume_mm3,
        c.mean_hu,
        c.p_nodule,
        c.p_malignant,
        c.mask,
    )
    writer.show((a, c2), GEOMETRY, Thresholds())
    assert [segmentation.GetNthSegmentID(i) for i in range(2)] == [ids[0], ids[2]]
    assert segmentation.GetNthSegment(1).GetRepresentation("Binary labelmap") is images[2]
    assert segmentation.GetNthSegment(1).GetName() == "Nodule 2 - malignancy 0.10"
    assert nodes.table.GetNumberOfRows() == 2
    # order follows the findings when it changes
    writer.show((c2, a), GEOMETRY, Thresholds())
    assert [segmentation.GetNthSegmentID(i) for i in range(2)] == [ids[2], ids[0]]
    writer.show((), GEOMETRY, Thresholds())
    assert segmentation.GetNumberOfSegments() == 0
    assert nodes.table.GetNumberOfRows() == 0
    assert sum(n.GetNumberOfControlPoints() for n in nodes.points.values()) == 0

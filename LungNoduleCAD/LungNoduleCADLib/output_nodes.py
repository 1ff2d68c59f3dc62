"""Which scene nodes are the module's: tagged with their role and the volume they describe, found
and removed by that tag, and never any other node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lungcad.pipeline import MalignancyBand
from LungNoduleCADLib.mrml import place_beside_volume

OUTPUT_ATTRIBUTE = "LungNoduleCAD.Output"
INPUT_REFERENCE_ROLE = "LungNoduleCAD.InputVolume"
SEGMENTATION_ROLE = "segmentation"
TABLE_ROLE = "table"


@dataclass
class OutputNodes:
    """The nodes that show one volume's findings."""

    segmentation: Any
    points: dict[MalignancyBand, Any]
    table: Any

    def all(self) -> list[Any]:
        return [self.segmentation, *self.points.values(), self.table]


def _is_output_of(node: Any, role: str, volume_node: Any) -> bool:
    return (
        node.GetAttribute(OUTPUT_ATTRIBUTE) == role
        and node.GetNodeReferenceID(INPUT_REFERENCE_ROLE) == volume_node.GetID()
    )


def find_output_node(scene: Any, role: str, volume_node: Any) -> Any | None:
    """The module's node with ``role`` for ``volume_node``, or None."""
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if _is_output_of(node, role, volume_node):
            return node
    return None


def output_nodes_of(scene: Any, volume_node: Any) -> list[Any]:
    """Every node the module made for ``volume_node``."""
    found = []
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if node.GetAttribute(OUTPUT_ATTRIBUTE) and (
            node.GetNodeReferenceID(INPUT_REFERENCE_ROLE) == volume_node.GetID()
        ):
            found.append(node)
    return found


def remove_node_with_helpers(scene: Any, node: Any) -> None:
    """Remove a node with its display and storage nodes (MRML leaves those behind otherwise)."""
    helpers = []
    for count, nth in (
        ("GetNumberOfDisplayNodes", "GetNthDisplayNode"),
        ("GetNumberOfStorageNodes", "GetNthStorageNode"),
    ):
        if hasattr(node, count):
            helpers += [getattr(node, nth)(i) for i in range(getattr(node, count)())]
    scene.RemoveNode(node)
    for helper in helpers:
        if helper is not None and scene.IsNodePresent(helper):
            scene.RemoveNode(helper)


def remove_output_nodes(scene: Any, volume_node: Any) -> int:
    """Remove the module's nodes for ``volume_node`` (and only those); returns how many."""
    nodes = output_nodes_of(scene, volume_node)
    for node in nodes:
        remove_node_with_helpers(scene, node)
    return len(nodes)


def _new_output_node(scene: Any, class_name: str, name: str, role: str, volume_node: Any) -> Any:
    node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
    node.SetAttribute(OUTPUT_ATTRIBUTE, role)
    node.SetNodeReferenceID(INPUT_REFERENCE_ROLE, volume_node.GetID())
    if hasattr(node, "SetAndObserveTransformNodeID"):  # a table is not transformable
        node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    place_beside_volume(scene, volume_node, node)  # under the CT's study in the data tree
    return node

"""The cascade's networks: sizes, outputs, seeds' layout, channels_last and bf16 autocast."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lungcad.models import CandidateClassifier, SegmentationUNet, parameter_count

UNET_PARAMETERS = 118_271
CLASSIFIER_PARAMETERS = 222_220


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def test_parameter_counts_are_exact_and_documented() -> None:
    unet, clf = SegmentationUNet(), CandidateClassifier()
    assert parameter_count(unet) == UNET_PARAMETERS
    assert parameter_count(clf) == CLASSIFIER_PARAMETERS
    assert f"{UNET_PARAMETERS:,}" in (SegmentationUNet.__doc__ or "")
    assert f"{CLASSIFIER_PARAMETERS:,}" in (CandidateClassifier.__doc__ or "")


def test_state_dict_keys_follow_the_seeds_layout() -> None:
    unet_keys = set(SegmentationUNet().state_dict())
    assert {
        "input_batchnorm.running_mean",
        "unet.down_path.0.block.0.weight",
        "unet.down_path.0.block.2.running_var",
        "unet.down_path.2.block.3.weight",
        "unet.up_path.0.up.weight",
        "unet.up_path.1.conv_block.block.5.num_batches_tracked",
        "unet.last.weight",
    } <= unet_keys
    clf_keys = set(CandidateClassifier().state_dict())
    assert {
        "tail_batchnorm.weight",
        "block1.conv1.weight",
        "block4.conv2.bias",
        "head_linear.weight",
    } <= clf_keys
    assert CandidateClassifier().head_linear.in_features == 64 * 2 * 3 * 3


@pytest.mark.parametrize("size", [(101, 93), (64, 64), (1, 1), (5, 3), (37, 128)])
def test_unet_output_matches_input_size_and_is_a_probability(size: tuple[int, int]) -> None:
    model = SegmentationUNet().eval()
    x = torch.randn(2, 7, *size) * 300
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 1, *size)
    assert y.dtype == torch.float32
    assert torch.all((y >= 0) & (y <= 1))


def test_unet_other_depths_and_classes() -> None:
    model = SegmentationUNet(in_channels=3, n_classes=2, depth=4, first_filters=4, batch_norm=False)
    with torch.no_grad():
        y = model.eval()(torch.randn(1, 3, 45, 23))
    assert y.shape == (1, 2, 45, 23)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.unet.modules())


def test_unet_rejects_wrong_channels_and_bad_hyperparameters() -> None:
    with pytest.raises(ValueError, match="expects"):
        SegmentationUNet()(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="depth"):
        SegmentationUNet(depth=0)


def test_unet_trains_with_gradients_in_channels_last() -> None:
    model = SegmentationUNet().train().to(memory_format=torch.channels_last)
    x = torch.randn(2, 7, 33, 30).to(memory_format=torch.channels_last)
    model(x).mean().backward()
    assert model.unet.down_path[0].block[0].weight.grad is not None
    assert int(model.input_batchnorm.num_batches_tracked) == 1


def test_unet_channels_last_and_bf16_autocast() -> None:
    model = SegmentationUNet().eval()
    x = torch.randn(2, 7, 41, 50)
    with torch.no_grad():
        ref = model(x)
        cl_model = SegmentationUNet().eval()
        cl_model.load_state_dict(model.state_dict())
        cl_model = cl_model.to(memory_format=torch.channels_last)
        cl = cl_model(x.to(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-5)
    assert low.shape == ref.shape
    assert torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() < 0.1


def test_classifier_logits_and_probabilities() -> None:
    model = CandidateClassifier().eval()
    x = torch.randn(3, 1, 32, 48, 48)
    with torch.no_grad():
        logits, probs = model(x)
    assert logits.shape == (3, 2) and probs.shape == (3, 2)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(3))
    torch.testing.assert_close(probs, torch.softmax(logits, dim=1))


def test_classifier_other_shapes_and_rejections() -> None:
    model = CandidateClassifier(
        in_channels=2, conv_channels=4, n_blocks=3, input_shape=(16, 24, 24)
    )
    logits, _ = model.eval()(torch.randn(2, 2, 16, 24, 24))
    assert logits.shape == (2, 2)
    assert model.hyperparameters["input_shape"] == [16, 24, 24]
    with pytest.raises(ValueError, match="expects"):
        CandidateClassifier()(torch.zeros(1, 1, 32, 48, 47))
    with pytest.raises(ValueError, match="input_shape"):
        CandidateClassifier(input_shape=(8, 48, 48))


def test_classifier_channels_last_3d_and_bf16_autocast() -> None:
    model = CandidateClassifier().eval()
    x = torch.randn(2, 1, 32, 48, 48)
    with torch.no_grad():
        ref_logits, _ = model(x)
        cl_logits, cl_probs = model(x.to(memory_format=torch.channels_last_3d))
        cl_model = CandidateClassifier().eval()
        cl_model.load_state_dict(model.state_dict())
        cl_model = cl_model.to(memory_format=torch.channels_last_3d)
        cl2_logits, _ = cl_model(x.to(memory_format=torch.channels_last_3d))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low_logits, low_probs = model(x.to(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(cl_logits, ref_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cl2_logits, ref_logits, rtol=1e-4, atol=1e-4)
    assert low_logits.shape == (2, 2) and torch.isfinite(low_logits).all()
    torch.testing.assert_close(low_probs.float().sum(1), torch.ones(2), atol=2e-2, rtol=0)
    assert torch.allclose(cl_probs.sum(1), torch.ones(2))


def test_seeds_initialisation() -> None:
    model = CandidateClassifier()
    conv = model.block4.conv2
    fan_out = conv.out_channels * 27
    bound = fan_out**-0.5
    # kaiming normal, fan_out, relu: std sqrt(2 / fan_out)
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)
    # the seeds draw biases with mean -bound and std bound
    assert conv.bias.mean().item() == pytest.approx(-bound, abs=4 * bound / 8)
    assert model.tail_batchnorm.weight.eq(1).all()

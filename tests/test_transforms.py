"""Transform presets: shapes, determinism, and that each study family does what it says."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import DataLoader, Dataset

from agefair.data.degradations import FILTERS, STUDY_FAMILIES, study_grid
from agefair.data.transforms import PRESETS, EvalPreset, TrainPreset, build_transform

ALL_PRESETS = [
    ("train", {}),
    ("eval", {}),
    ("resolution", {"resolution": 16}),
    ("face_fraction", {"fraction": 0.25}),
    ("filter", {"name": "sepia", "strength": 1.0}),
]


def face_like(size: int, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient with a bright oval and some noise: detail at every scale."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([60 + 150 * xx, 60 + 150 * yy, 40 + 100 * (xx + yy) / 2], -1)
    img[(xx - 0.5) ** 2 + (yy - 0.45) ** 2 < 0.08] += 40
    img += np.random.default_rng(seed).normal(0, 15, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def white_noise(size: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.fixture()
def image() -> np.ndarray:
    return face_like(64)


def spectral_energy(img: np.ndarray, above: float) -> float:
    """Energy of the grey picture at radial frequencies above ``above`` cycles per image."""
    g = img.astype(float).mean(-1)
    power = np.abs(np.fft.fft2(g - g.mean())) ** 2
    k = np.fft.fftfreq(g.shape[0], 1 / g.shape[0])
    return float(power[np.hypot(*np.meshgrid(k, k)) > above].sum())


def as_int(img: np.ndarray) -> np.ndarray:
    return img.astype(np.int32)


# ----------------------------------------------------------------------------- every preset
@pytest.mark.parametrize("cache", [64, 200])
@pytest.mark.parametrize(("name", "kwargs"), ALL_PRESETS)
def test_presets_give_normalised_tensors_and_keep_input(name, kwargs, cache):
    image = face_like(cache)
    before = image.copy()
    preset = build_transform(name, 48, **kwargs)
    out = preset(image)
    assert out.shape == (3, 48, 48) and out.dtype == torch.float32
    assert out.min() >= -1.0 and out.max() <= 1.0  # mean 0.5, std 0.5 maps 0..255 to -1..1
    pixels = preset.pixels(image)
    assert pixels.shape == (48, 48, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(image, before)


def test_tensor_is_the_normalised_picture(image):
    preset = build_transform("filter", 64, name="sepia", mean=(0.0,) * 3, std=(1.0,) * 3)
    expected = torch.from_numpy(preset.pixels(image)).permute(2, 0, 1).float() / 255
    assert torch.allclose(preset(image), expected, atol=1e-6)


def test_tensor_matches_albumentations_normalisation(image):
    """The fast normalisation gives albumentations' Normalize + ToTensorV2, any mean and std."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    preset = build_transform("eval", 48, mean=mean, std=std)
    reference = A.Compose([A.Normalize(mean=mean, std=std), ToTensorV2()])
    expected = reference(image=preset.pixels(image))["image"]
    out = preset(image)
    assert out.is_contiguous() and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_pixels_is_a_copy_even_when_nothing_changes(image):
    out = build_transform("eval", 64).pixels(image)
    np.testing.assert_array_equal(out, image)
    out[:] = 0
    assert image.any()


def test_eval_shrinks_with_area_interpolation():
    big = face_like(200)
    expected = cv2.resize(big, (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(EvalPreset(64).pixels(big), expected)


# ----------------------------------------------------------------------------- training preset
def test_train_is_random_and_seedable(image):
    train = build_transform("train", 64)
    draws = [train.pixels(image) for _ in range(4)]
    assert any(not np.array_equal(draws[0], d) for d in draws[1:])
    a, b = TrainPreset(64, seed=3), TrainPreset(64, seed=3)
    for _ in range(3):
        np.testing.assert_array_equal(a.pixels(image), b.pixels(image))


def test_train_strength_zero_is_eval(image):
    plain = build_transform("train", 64, strength=0.0)
    for _ in range(3):
        assert torch.equal(plain(image), build_transform("eval", 64)(image))


def test_train_strength_scales_the_jitter(image):
    def mean_change(strength: float) -> float:
        train = TrainPreset(64, hflip=0.0, strength=strength, seed=0)
        return float(
            np.mean([np.abs(as_int(train.pixels(image)) - image).mean() for _ in range(30)])
        )

    assert 0 < mean_change(0.3) < mean_change(1.0) < mean_change(2.0)


@pytest.mark.parametrize("loss", ["downscale", "jpeg"])
def test_train_can_lose_detail_like_a_photo(image, loss):
    still = {"hflip": 0.0, "shift": 0, "scale": 0, "rotate": 0, "brightness_contrast": 0}
    plain = TrainPreset(64, **still).pixels(image)
    lossy = TrainPreset(64, **still, **{loss: 1.0}, seed=0).pixels(image)
    change = np.abs(as_int(lossy) - plain)
    assert change.mean() > 0.5, f"{loss} left the picture as it was"
    assert change.mean() < 20, f"{loss} destroyed the picture instead of blurring its detail"


def test_flip_inside_the_warp_mirrors_the_picture(image):
    mirrored = image[:, ::-1]
    flip_only = TrainPreset(64, hflip=1.0, shift=0, scale=0, rotate=0, brightness_contrast=0)
    np.testing.assert_array_equal(flip_only.pixels(image), mirrored)
    # a negligible rotation takes the warp path, where the flip is folded into the matrix
    warped = TrainPreset(64, hflip=1.0, shift=0, scale=0, rotate=1e-6, brightness_contrast=0)
    assert np.abs(as_int(warped.pixels(image)) - mirrored).max() <= 1


class _Repeat(Dataset):
    def __init__(self, image: np.ndarray, transform: TrainPreset) -> None:
        self.image, self.transform = image, transform

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.image)


def test_dataloader_workers_draw_different_augmentations(image):
    # albumentations 2.0 leaves reseeding to the user: forked workers would replay one sequence.
    loader = DataLoader(_Repeat(image, TrainPreset(64, seed=0)), batch_size=1, num_workers=2)
    first, second = list(loader)  # item 0 from worker 0, item 1 from worker 1: both first draws
    assert not torch.equal(first, second)


# ----------------------------------------------------------------------------- study families
@pytest.mark.parametrize("family", STUDY_FAMILIES)
def test_study_presets_are_deterministic(image, family):
    for point in study_grid(family):
        a, b = build_transform(family, 64, **point), build_transform(family, 64, **point)
        first = a.pixels(image)
        np.testing.assert_array_equal(first, a.pixels(image))
        np.testing.assert_array_equal(first, b.pixels(image))  # a fresh instance agrees


@pytest.mark.parametrize("source", [64, 200])  # the cache's side, and the study's 200 px
def test_resolution_leaves_no_more_than_n_pixels_of_detail(source):
    noise = white_noise(source)  # detail at every frequency, and no edges to leak energy
    out = build_transform("resolution", 64, resolution=8).pixels(noise)
    clean = EvalPreset(64).pixels(noise)

    def down_up(img: np.ndarray) -> np.ndarray:
        small = cv2.resize(img, (8, 8), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (64, 64), interpolation=cv2.INTER_LINEAR)

    # Going through 8 px again changes nothing beyond rounding, unlike for the original.
    assert np.abs(as_int(down_up(out)) - out).mean() < 3
    assert np.abs(as_int(down_up(clean)) - clean).mean() > 10
    # Above the Nyquist frequency of an 8-px picture (4 cycles per image) almost nothing is left.
    assert spectral_energy(out, 4) < 0.01 * spectral_energy(clean, 4)


def test_lower_resolution_keeps_less_detail():
    noise = white_noise(64)
    energy = [
        spectral_energy(build_transform("resolution", 64, resolution=r).pixels(noise), 2)
        for r in (8, 16, 32)
    ]
    assert energy[0] < energy[1] < energy[2]


@pytest.mark.parametrize("cache", [64, 200])
def test_resolution_at_or_above_the_input_is_eval(cache):
    image = face_like(cache)
    expected = EvalPreset(64).pixels(image)
    for resolution in (cache, 2 * cache):
        got = build_transform("resolution", 64, resolution=resolution).pixels(image)
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("img_size", [64, 100])
@pytest.mark.parametrize("fraction", [0.5, 0.25, 0.1])
def test_face_fraction_gives_the_stated_share(fraction, img_size):
    white = np.full((80, 80, 3), 255, np.uint8)
    preset = build_transform("face_fraction", img_size, fraction=fraction, background="constant")
    face = preset.pixels(white).min(-1) > 200  # the background is mid-grey
    assert face.mean() == pytest.approx(fraction, rel=0.05)
    rows, cols = np.nonzero(face)  # centred
    assert abs(rows.mean() - (img_size - 1) / 2) <= 1 and abs(cols.mean() - (img_size - 1) / 2) <= 1


def test_face_fraction_one_is_eval(image):
    for cache in (64, 200):
        picture = face_like(cache)
        got = build_transform("face_fraction", 64, fraction=1.0).pixels(picture)
        np.testing.assert_array_equal(got, EvalPreset(64).pixels(picture))


def test_face_fraction_backgrounds_share_the_face(image):
    outs = {
        bg: build_transform("face_fraction", 64, fraction=0.25, background=bg).pixels(image)
        for bg in ("reflect", "constant", "blur")
    }
    centre = (slice(16, 48), slice(16, 48))  # the 32-px face
    np.testing.assert_array_equal(outs["reflect"][centre], outs["blur"][centre])
    np.testing.assert_array_equal(outs["reflect"][centre], outs["constant"][centre])
    assert (outs["constant"][:16] == 128).all()
    # the blurred background is smoother than the reflected one
    assert (
        np.abs(np.diff(as_int(outs["blur"][:16]), axis=1)).mean()
        < np.abs(np.diff(as_int(outs["reflect"][:16]), axis=1)).mean()
    )


@pytest.mark.parametrize("strength", [0.5, 1.0])
@pytest.mark.parametrize("name", FILTERS)
def test_filters_change_the_picture_and_keep_shape(image, name, strength):
    out = build_transform("filter", 64, name=name, strength=strength).pixels(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (name == "none") == np.array_equal(out, image)


def test_filters_go_the_stated_way(image):
    def apply(name: str, strength: float = 1.0, img: np.ndarray = image) -> np.ndarray:
        return build_transform("filter", 64, name=name, strength=strength).pixels(img)

    assert apply("brightness").mean() > apply("brightness", 0.5).mean() > image.mean()
    assert apply("darkness").mean() < apply("darkness", 0.5).mean() < image.mean()
    assert apply("contrast").std() < apply("contrast", 0.5).std() < image.std()
    assert apply("sharpen").std() > image.std()
    jpeg_error = [np.abs(as_int(apply("jpeg", s)) - image).mean() for s in (0.5, 1.0)]
    assert 0 < jpeg_error[0] < jpeg_error[1]
    vignette = apply("vignette")
    np.testing.assert_array_equal(vignette[30:34, 30:34], image[30:34, 30:34])  # centre kept
    assert (vignette[[0, 0, -1, -1], [0, -1, 0, -1]] == 0).all()  # corners black at strength 1
    sepia = apply("sepia").astype(float).mean((0, 1))
    assert sepia[0] > sepia[1] > sepia[2]  # warm tones


def test_stronger_blur_removes_more_detail():
    noise = white_noise(64)
    weak = build_transform("filter", 64, name="blur", strength=0.3).pixels(noise)
    strong = build_transform("filter", 64, name="blur", strength=1.0).pixels(noise)
    assert spectral_energy(strong, 8) < spectral_energy(weak, 8) < spectral_energy(noise, 8)


def test_noise_is_seeded_but_differs_between_pictures(image):
    noisy = build_transform("filter", 64, name="noise", strength=1.0)
    residual = as_int(noisy.pixels(image)) - image
    other = face_like(64, seed=5)
    assert not np.array_equal(residual, as_int(noisy.pixels(other)) - other)
    reseeded = build_transform("filter", 64, name="noise", strength=1.0, seed=1)
    assert not np.array_equal(noisy.pixels(image), reseeded.pixels(image))
    assert 15 < residual.std() < 30  # sigma 25 grey levels, minus clipping


def test_grayscale_has_equal_channels(image):
    out = build_transform("filter", 64, name="grayscale", strength=1.0).pixels(image)
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


# ----------------------------------------------------------------------------- errors, grids
def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="known: eval, face_fraction, filter, resolution, train"):
        build_transform("sparkle", 64)
    with pytest.raises(ValueError, match="known: none, grayscale, sepia"):
        build_transform("filter", 64, name="oil-paint")
    for fraction in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\], got"):
            build_transform("face_fraction", 64, fraction=fraction)
    with pytest.raises(ValueError, match="known: reflect, constant, blur"):
        build_transform("face_fraction", 64, fraction=0.5, background="zebra")
    with pytest.raises(ValueError, match="resolution must be an integer >= 1"):
        build_transform("resolution", 64, resolution=0)
    with pytest.raises(ValueError, match=r"filter strength must be in \(0, 1\]"):
        build_transform("filter", 64, name="blur", strength=1.5)
    with pytest.raises(TypeError, match="unexpected.*sharpness.*takes: mean, std"):
        build_transform("eval", 64, sharpness=3)
    with pytest.raises(TypeError, match="missing.*resolution"):
        build_transform("resolution", 64)
    with pytest.raises(ValueError, match="scale \\* strength must be < 1"):
        build_transform("train", 64, scale=0.5, strength=2.0)
    with pytest.raises(ValueError, match="hflip must be in"):
        build_transform("train", 64, hflip=1.5)
    with pytest.raises(ValueError, match="img_size must be an integer >= 1"):
        build_transform("eval", 0)
    with pytest.raises(TypeError, match="uint8"):
        build_transform("eval", 64)(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="H x W x 3"):
        build_transform("eval", 64)(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="known: resolution, face_fraction, filter"):
        study_grid("train")


def test_study_grids_cover_the_required_points():
    resolutions = [p["resolution"] for p in study_grid("resolution")]
    assert resolutions == [8, 12, 16, 24, 32, 48, 64, 96, 128, 200]
    fractions = [p["fraction"] for p in study_grid("face_fraction")]
    assert fractions == [1.0, 0.5, 0.25, 0.1, 0.05, 0.02]
    filters = study_grid("filter")
    assert {"name": "none"} in filters
    expected = {(n, s) for n in FILTERS if n != "none" for s in (0.5, 1.0)}
    assert {(p["name"], p.get("strength")) for p in filters if p["name"] != "none"} == expected
    assert len(filters) == 1 + len(expected)
    assert set(FILTERS) >= {"grayscale", "sepia", "blur", "sharpen", "jpeg", "noise", "vignette"}
    assert set(PRESETS) == {"train", "eval", *STUDY_FAMILIES}
    study_grid("resolution").clear()  # a fresh list each call
    assert len(study_grid("resolution")) == 10

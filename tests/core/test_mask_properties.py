"""Property tests of mask handling: any valid mask works the same whatever its dtype or layout,
every invalid one is a ValueError that says why, and the all-observed / all-missing extremes
give y and plain annealed sampling."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ncsn.core.inpaint import inpaint, validate_mask
from ncsn.core.masks import MASKS, make_mask
from ncsn.core.rng import rand_like
from ncsn.core.sampling import annealed_langevin
from ncsn.core.sigmas import geometric_sigmas

SIGMAS = geometric_sigmas(1.0, 0.1, 3)
DTYPES = [torch.float32, torch.float64, torch.float16, torch.uint8, torch.int64, torch.bool]
FEW = settings(max_examples=40, deadline=None)


pytestmark = pytest.mark.usefixtures("single_thread")


def score(x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Exact score of independent pixels N(0.5, 0.1²) perturbed at σ_levels."""
    sigma = SIGMAS.to(x.dtype)[levels].reshape(-1, *([1] * (x.ndim - 1)))
    return -(x - 0.5) / (0.01 + sigma ** 2)


def run(y: torch.Tensor, mask: torch.Tensor, seed: int = 0, x0: torch.Tensor | None = None) -> torch.Tensor:
    return inpaint(score, y, mask, SIGMAS, n_steps_each=2, eps=1e-3, generator=torch.Generator().manual_seed(seed),
                   x0=x0)


@st.composite
def image_and_mask_shape(draw) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """y [B, C, H, W] and a mask shape that broadcasts to it (size-1 dims, dropped leading dims)."""
    y_shape = tuple(draw(st.lists(st.integers(1, 4), min_size=4, max_size=4)))
    keep = [draw(st.booleans()) for _ in y_shape]
    mask_shape = tuple(d if k else 1 for d, k in zip(y_shape, keep))
    return y_shape, mask_shape[draw(st.integers(0, 3)):]


@FEW
@given(image_and_mask_shape(), st.sampled_from(DTYPES), st.integers(0, 2**16))
def test_any_valid_mask_keeps_observed_pixels_and_ignores_dtype(shapes, dtype: torch.dtype, seed: int) -> None:
    y_shape, mask_shape = shapes
    gen = torch.Generator().manual_seed(seed)
    y = torch.rand(y_shape, generator=gen)
    bits = torch.rand(mask_shape, generator=gen) < 0.5
    mask = bits.to(dtype)
    y_before, mask_before = y.clone(), mask.clone()
    out = run(y, mask, seed)
    observed = bits.expand(y_shape)
    assert out.shape == y.shape and torch.isfinite(out).all()
    assert torch.equal(out[observed], y[observed])
    assert torch.equal(out, run(y, bits.float(), seed))  # the dtype does not matter
    assert torch.equal(y, y_before) and torch.equal(mask, mask_before)  # inputs untouched


@FEW
@given(image_and_mask_shape(), st.sampled_from(DTYPES), st.integers(0, 2**16))
def test_all_observed_gives_y_and_all_missing_gives_plain_sampling(shapes, dtype: torch.dtype, seed: int) -> None:
    y_shape, mask_shape = shapes
    y = torch.rand(y_shape, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(y, torch.ones(mask_shape, dtype=dtype), seed), y)
    x0 = rand_like(y, torch.Generator().manual_seed(seed + 1))
    plain = annealed_langevin(score, x0, SIGMAS, n_steps_each=2, eps=1e-3,
                              generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(y, torch.zeros(mask_shape, dtype=dtype), seed, x0=x0), plain)


@FEW
@given(image_and_mask_shape(), st.integers(0, 3), st.integers(2, 6))
def test_a_mask_that_does_not_broadcast_names_both_shapes(shapes, dim: int, wrong: int) -> None:
    y_shape, _ = shapes
    mask_shape = list(y_shape)
    if wrong == y_shape[dim]:
        wrong += 1
    mask_shape[dim] = wrong  # neither 1 nor the image's size
    y = torch.zeros(y_shape)
    with pytest.raises(ValueError, match="does not broadcast") as err:
        validate_mask(torch.ones(mask_shape), y)
    assert str(tuple(mask_shape)) in str(err.value) and str(tuple(y_shape)) in str(err.value)
    with pytest.raises(ValueError, match="does not broadcast"):
        validate_mask(torch.ones(2, *y_shape), y)  # an extra leading dimension > 1


@FEW
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: v not in (0.0, 1.0)),
                 st.integers(-300, 300).filter(lambda v: v not in (0, 1))),
       st.integers(0, 15))
def test_a_value_other_than_0_or_1_is_refused(bad, where: int) -> None:
    dtype = torch.int64 if isinstance(bad, int) else torch.float64
    mask = torch.ones(1, 1, 4, 4, dtype=dtype)
    mask.view(-1)[where] = bad
    with pytest.raises(ValueError, match=r"must be 0 \(missing\) or 1 \(observed\)"):
        run(torch.zeros(2, 3, 4, 4), mask)


def test_a_complex_mask_is_refused() -> None:
    with pytest.raises(ValueError, match="real or bool"):
        validate_mask(torch.ones(4, 4, dtype=torch.complex64), torch.zeros(1, 1, 4, 4))


@FEW
@given(st.sampled_from(MASKS), st.integers(0, 3), st.integers(1, 16), st.floats(0.0, 1.0), st.integers(0, 2**16))
def test_made_masks_are_binary_and_hide_what_they_say(kind: str, n: int, size: int, fraction: float,
                                                      seed: int) -> None:
    mask = make_mask(kind, n, size, fraction=fraction, generator=torch.Generator().manual_seed(seed))
    assert mask.shape == (n, 1, size, size) and mask.dtype == torch.float32
    assert ((mask == 0) | (mask == 1)).all()
    if kind == "right_half":
        assert (mask[..., : size // 2] == 1).all() and (mask[..., size // 2:] == 0).all()
    elif kind == "center":
        lo, hi = size // 4, size - size // 4
        hidden = torch.zeros(size, size, dtype=torch.bool)
        hidden[lo:hi, lo:hi] = True
        assert torch.equal(mask == 0, hidden.expand(n, 1, size, size))
    else:
        again = make_mask(kind, n, size, fraction=fraction, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(mask, again)  # determined by the generator
        if fraction in (0.0, 1.0):
            assert (mask == 1 - fraction).all()


@FEW
@given(st.one_of(
    st.tuples(st.text(max_size=10).filter(lambda k: k not in MASKS), st.just(2), st.just(4), st.just(0.5)),
    st.tuples(st.sampled_from(MASKS), st.integers(-5, -1), st.just(4), st.just(0.5)),
    st.tuples(st.sampled_from(MASKS), st.just(2), st.integers(-5, 0), st.just(0.5)),
    st.tuples(st.sampled_from(MASKS), st.just(2), st.just(4),
              st.floats(allow_nan=True).filter(lambda f: math.isnan(f) or not 0.0 <= f <= 1.0)),
))
def test_a_bad_mask_request_is_a_value_error_that_says_why(bad: tuple) -> None:
    kind, n, size, fraction = bad
    with pytest.raises(ValueError, match="unknown mask|mask count|mask size|mask fraction"):
        make_mask(kind, n, size, fraction=fraction)

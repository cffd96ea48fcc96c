"""Per-image outcomes in the record: packed compactly, checked against the accuracies beside them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from corebench.core.errors import ResultsError
from corebench.store.record import pack_bits, parse_record, unpack_bits

from records import example_record, with_outcomes


@pytest.mark.parametrize("n", [1, 7, 8, 9, 100, 1000])
def test_pack_bits_round_trips_and_is_compact(n):
    bits = np.random.default_rng(n).random(n) < 0.3
    text = pack_bits(bits)
    assert len(text) == 4 * -(-((n + 7) // 8) // 3)  # base64 of ceil(n/8) bytes
    np.testing.assert_array_equal(unpack_bits(text, n), bits)
    assert pack_bits([True, False, True]) == "oA=="  # 0b10100000: numpy's big-endian bit order


def test_unpack_bits_rejects_text_of_the_wrong_length():
    with pytest.raises(ValueError, match="holds 1 bytes; 9 images need 2"):
        unpack_bits(pack_bits([True] * 8), 9)
    with pytest.raises(ValueError, match="not base64"):
        unpack_bits("@@@", 3)


def test_a_record_keeps_outcomes_that_count_to_its_accuracies():
    rng = np.random.default_rng(0)
    clean = rng.random(450) < 0.8
    robust = clean & (rng.random(450) < 0.5)
    rec = with_outcomes(example_record(), clean, robust)
    parsed = parse_record(json.dumps(rec))
    got = parsed.per_image_outcomes.unpacked()
    np.testing.assert_array_equal(got["clean"], clean)
    (pgd, aa), = got["robust"].values()
    np.testing.assert_array_equal(aa, robust)
    assert parse_record(json.dumps(example_record())).per_image_outcomes is None  # older records: none

    flipped = json.loads(json.dumps(rec))
    flipped["per_image_outcomes"]["clean"] = pack_bits(~clean)
    with pytest.raises(ResultsError, match=r"^per_image_outcomes.clean: .* not allowed; allowed: the accuracy in metrics"):
        parse_record(json.dumps(flipped))
    short = json.loads(json.dumps(rec))
    short["per_image_outcomes"]["n"] = 449
    with pytest.raises(ResultsError, match=r"^per_image_outcomes.n: 449 is not allowed; allowed: metrics.n_eval \(450\)"):
        parse_record(json.dumps(short))

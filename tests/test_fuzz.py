"""A short fuzz run in CI (tests/fuzz_container.py; the long local run is in docs/errors.md)."""

from fuzz_container import run


def test_two_thousand_mutated_and_crc_forged_files_are_decoded_or_refused_with_a_one_line_error():
    result = run(2000, seed=20261130)
    assert result["findings"] == []
    outcomes = result["outcomes"]
    assert sum(outcomes.values()) == 2000
    assert outcomes["HeaderError"] > 500 and outcomes["CodecError"] > 100  # the forgeries reach the deep checks

"""The dead-letter topic copy's pure decisions: what goes, whole or cut to fit."""

import datetime as dt

import pyarrow as pa

from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter import rows as dead_letter
from tabletopic.deadletter.topic import RECORD_OVERHEAD, TRUNCATED, Copy, copies_of, fitted, record_bytes, without_value
from tabletopic.decode.base import BadValue

WHERE = ("t", 1, 42)


def test_a_copy_that_fits_goes_whole():
    copy = Copy(WHERE, b"k", b"v" * 100, [("h", b"x")])
    assert fitted(copy, 10_000) is copy


def test_a_copy_too_big_goes_with_its_value_cut_to_fit_and_the_real_length_in_a_header():
    copy = Copy(WHERE, b"key", b"v" * 2_000_000, [("h", b"x")])
    fit = fitted(copy, 1_000_000)
    assert fit is not None and fit.truncated_from == 2_000_000
    assert dict(fit.headers)[TRUNCATED] == b"2000000" and ("h", b"x") in fit.headers
    assert record_bytes(fit.key, fit.value, fit.headers) == 1_000_000
    assert fit.value == b"v" * len(fit.value or b"") and fit.key == b"key" and fit.coordinates == WHERE


def test_a_copy_whose_key_alone_is_too_big_is_not_made():
    assert fitted(Copy(WHERE, b"k" * 5000, b"v", []), 2000 + RECORD_OVERHEAD) is None


def test_without_value_keeps_the_real_length_once():
    fit = fitted(Copy(WHERE, None, b"v" * 5000, []), 3000)
    assert fit is not None
    stub = without_value(fit)
    assert stub.value is None and [h for h in stub.headers if h[0] == TRUNCATED] == [(TRUNCATED, b"5000")]


def test_copies_carry_where_the_record_came_from_and_why():
    chunk = RecordChunk("src", 2, [7, 8], [b"a", None], [b"x", b"y"], [1, 2], [[("trace", b"1")], None])
    letters = dead_letter.dead_letter_rows(chunk, [BadValue(1, "broken", Reason.MALFORMED_JSON)],
                                           dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    [copy] = copies_of(pa.Table.from_batches(letters.to_batches()))
    assert copy.coordinates == ("src", 2, 8) and copy.key is None and copy.value == b"y"
    headers = dict(copy.headers)
    assert headers["tabletopic.offset"] == b"8" and headers["tabletopic.reason"] == b"malformed_json"

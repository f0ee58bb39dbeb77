"""Key files: round trips, integrity, limits and permissions."""

import json
import stat

import numpy as np
import pytest

from wmtool.errors import UserError
from wmtool.keys import Key, NullRate, Task, decode_array, encode_array, load_key, save_key
from wmtool.preprocessing import Preprocessing


def make_key() -> Key:
    rng = np.random.default_rng(0)
    return Key("backdoor", "trigger-set", {"source": 1, "target": 7}, Task((1, 8, 8), 10, Preprocessing(255.0)),
               NullRate.from_reference(2, 100, 10), "ab" * 32,
               {"inputs": rng.random((5, 1, 8, 8), dtype=np.float32), "labels": np.full(5, 7, dtype=np.int64)})


def test_round_trip_keeps_every_field(tmp_path):
    key = make_key()
    path = save_key(key, tmp_path / "key.json")
    loaded = load_key(path)
    assert loaded.scheme == "backdoor" and loaded.params == {"source": 1, "target": 7}
    assert loaded.task == key.task and loaded.null == key.null and loaded.model_sha256 == key.model_sha256
    np.testing.assert_array_equal(loaded.arrays["inputs"], key.arrays["inputs"])
    np.testing.assert_array_equal(loaded.arrays["labels"], key.arrays["labels"])


def test_key_is_private_to_its_owner(tmp_path):
    path = save_key(make_key(), tmp_path / "key.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_edited_key_is_refused(tmp_path):
    path = save_key(make_key(), tmp_path / "key.json")
    doc = json.loads(path.read_text())
    doc["null"]["rate"] = 0.0001
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="checksum"):
        load_key(path)


@pytest.mark.parametrize("content,message", [("{", "invalid JSON"), ("[]", "not a wmtool key"),
                                             ('{"format": "wmtool-key", "version": 99}', "not supported")])
def test_malformed_keys_are_refused(tmp_path, content, message):
    path = tmp_path / "key.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_key(path)


def test_null_rate_never_goes_below_chance():
    assert NullRate.from_reference(0, 100, 10).rate == pytest.approx(0.1)
    high = NullRate.from_reference(40, 100, 10)
    assert high.rate > 0.4 and high.method == "reference-model" and high.observed == 0.4


def test_array_codec_round_trips_and_checks_sizes():
    array = np.arange(12, dtype=np.int64).reshape(3, 4)
    np.testing.assert_array_equal(decode_array("a", encode_array(array)), array)
    bomb = encode_array(np.zeros(10, dtype=np.uint8))
    bomb["shape"] = [10**12]
    with pytest.raises(UserError, match="over the limit"):
        decode_array("a", bomb)
    short = encode_array(np.zeros(10, dtype=np.uint8))
    short["shape"] = [11]
    with pytest.raises(UserError, match="different amount"):
        decode_array("a", short)

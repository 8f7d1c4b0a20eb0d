import pytest

from condnn.config import build_from_config, config_to_json, record_arguments


class Recorder:
    def __init__(self, a, /, b, *rest, c=3, **options):
        self.seen = (a, b, rest, c, options)


def test_records_every_kind_of_argument_with_defaults():
    config = record_arguments(Recorder, (1, 2, 5, 6), {"d": 7})
    assert config == {"a": 1, "b": 2, "rest": (5, 6), "c": 3, "options": {"d": 7}}


def test_rebuilds_the_same_call():
    config = record_arguments(Recorder, (1, 2, 5, 6), {"c": 4, "d": 7})
    assert build_from_config(Recorder, config).seen == (1, 2, (5, 6), 4, {"d": 7})


def test_arguments_that_do_not_fit_are_not_recorded():
    # __init__ itself raises the TypeError for such a call; recording must not.
    assert record_arguments(Recorder, (), {"a": 1, "b": 2}) == {}
    with pytest.raises(TypeError):
        Recorder(a=1, b=2)


def test_rebuild_rejects_a_config_of_another_signature():
    with pytest.raises(TypeError, match=r"missing \['b'\], unexpected \['z'\]"):
        build_from_config(Recorder, {"a": 1, "rest": [], "c": 3, "options": {}, "z": 0})


def test_json_names_the_argument_it_cannot_hold():
    assert config_to_json("Recorder", {"a": 1, "b": [1.5, "x"]}) == '{"a": 1, "b": [1.5, "x"]}'
    with pytest.raises(TypeError, match="constructor argument 'b' of Recorder is not "
                                        "JSON-serializable"):
        config_to_json("Recorder", {"a": 1, "b": object()})

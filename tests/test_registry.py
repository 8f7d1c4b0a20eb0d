import pytest

import condnn
from condnn.registry import model_class, registered_name


class Registered(condnn.Model):
    pass


def test_models_register_under_their_class_name():
    assert model_class("Registered", __name__) is Registered

    @condnn.register_model(name="test-model-renamed")
    class Renamed(condnn.Model):
        pass

    assert model_class("test-model-renamed") is Renamed
    assert registered_name(Renamed) == "test-model-renamed"
    with pytest.raises(LookupError, match="no model class is registered as 'Renamed'"):
        model_class("Renamed", "some.module")


def test_same_class_name_in_two_modules_is_told_apart_by_module():
    first = type("Twin", (condnn.Model,), {"__module__": "first_module"})
    second = type("Twin", (condnn.Model,), {"__module__": "second_module"})
    assert model_class("Twin", "first_module") is first
    assert model_class("Twin", "second_module") is second
    with pytest.raises(LookupError, match="several model classes are registered as 'Twin'"):
        model_class("Twin", "__main__")

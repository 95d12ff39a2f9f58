"""Models of other packages by entry point (issue 27 item 1): loaded lazily and once, listed with their package,
and every way a plugin can fail to join is an error naming the entry point, its distribution and the cause."""

from __future__ import annotations

import pytest

from jasrbench import dag, deps
from jasrbench.models import PluginError, available, build, plugin_of, plugins, registry

GOOD = """
    from torch import nn
    from jasrbench.models import FaceModel, ModelOutput

    class Up(FaceModel):
        predicts_sr = True

        def __init__(self, num_points=68, alpha=1.0):
            super().__init__(num_points, alpha)
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, lr):
            return ModelOutput(sr=self.upsample(lr) + self.conv(self.upsample(lr)))
"""


def test_an_entry_point_joins_the_registry_with_its_package(fake_plugins):
    fake_plugins.module("goodpkg.model", GOOD)
    fake_plugins.distribution("good-plugin", "1.2.3", {"goodup": "goodpkg.model:Up"})
    assert registry._LOAD["state"] == "pending"  # nothing loaded before the registry is used
    listed = available(with_package=True)
    assert listed["goodup"] == "good-plugin 1.2.3" and listed["edsr"] == "jasrbench"
    assert "goodup" in available()
    info = plugin_of("goodup")
    assert (info.distribution, info.version, info.entry_point) == ("good-plugin", "1.2.3", "goodup = goodpkg.model:Up")
    assert plugin_of("edsr") is None
    assert build("goodup").registry_name == "goodup"


def test_entry_points_are_loaded_once(fake_plugins, monkeypatch):
    fake_plugins.module("oncepkg.model", GOOD)
    fake_plugins.distribution("once-plugin", "0.1", {"onceup": "oncepkg.model:Up"})
    calls = []
    original = registry._entry_points
    monkeypatch.setattr(registry, "_entry_points", lambda: calls.append(1) or original())
    available(), plugins(), build("onceup"), available()
    assert calls == [1]


def test_a_module_entry_point_registers_its_own_models(fake_plugins):
    fake_plugins.module("modpkg.models", GOOD + """
    from jasrbench.models import register

    register("mod_a", description="A")(Up)
    register("mod_b", description="B")(Up)
""")
    fake_plugins.distribution("mod-plugin", "2.0", {"modpkg": "modpkg.models"})
    assert {n: p.package for n, p in plugins().items()} == {"mod_a": "mod-plugin 2.0", "mod_b": "mod-plugin 2.0"}


def test_a_failing_import_names_the_entry_point_the_package_and_the_exception(fake_plugins):
    fake_plugins.module("brokenpkg.model", "import not_installed_dependency_xyz\n")
    fake_plugins.distribution("broken-plugin", "0.3", {"broken": "brokenpkg.model:Net"})
    with pytest.raises(PluginError) as err:
        build("edsr")  # any use of the registry: the plugin is loaded on the first one
    message = str(err.value)
    assert "'broken = brokenpkg.model:Net'" in message and "broken-plugin 0.3" in message, message
    assert "ModuleNotFoundError" in message and "not_installed_dependency_xyz" in message, message
    assert "jasrbench.models" in message  # the group
    with pytest.raises(PluginError, match="broken-plugin 0.3"):  # remembered: every later use says it again
        available()


def test_a_name_of_a_built_in_model_is_a_clash_naming_both(fake_plugins):
    fake_plugins.module("clashpkg.model", GOOD)
    fake_plugins.distribution("clash-plugin", "1.0", {"edsr": "clashpkg.model:Up"})
    with pytest.raises(PluginError) as err:
        available()
    message = str(err.value)
    assert "plugin model 'edsr'" in message and "clash-plugin 1.0" in message, message
    assert "the built-in model 'edsr' (jasrbench.models.edsr)" in message, message


def test_two_plugins_of_one_name_are_a_clash_naming_both(fake_plugins):
    fake_plugins.module("firstpkg.model", GOOD)
    fake_plugins.module("secondpkg.model", GOOD)
    fake_plugins.distribution("first-plugin", "1.0", {"samename": "firstpkg.model:Up"})
    fake_plugins.distribution("second-plugin", "2.0", {"samename": "secondpkg.model:Up"})
    with pytest.raises(PluginError) as err:
        available()
    message = str(err.value)
    assert "first-plugin 1.0" in message and "second-plugin 2.0" in message, message
    assert "samename" in message


def test_a_module_registering_a_taken_name_is_a_clash(fake_plugins):
    fake_plugins.module("takerpkg.models", GOOD + """
    from jasrbench.models import register

    register("vdsr")(Up)
""")
    fake_plugins.distribution("taker-plugin", "0.1", {"takerpkg": "takerpkg.models"})
    with pytest.raises(PluginError, match=r"plugin model 'vdsr'.*taker-plugin 0\.1.*the built-in model 'vdsr'"):
        available()


def test_an_entry_point_to_something_else_is_named(fake_plugins):
    fake_plugins.module("oddpkg.model", "NUMBER = 3\n")
    fake_plugins.distribution("odd-plugin", "0.1", {"odd": "oddpkg.model:NUMBER"})
    with pytest.raises(PluginError, match=r"'odd = oddpkg.model:NUMBER' of odd-plugin 0\.1: NUMBER is a int, not a "
                                          "FaceModel subclass"):
        available()


def test_the_closure_and_the_runs_slots_follow_into_the_plugin_package(fake_plugins):
    """A change to the plugin's own files retrains it: they are its code deps, absolute outside the repository."""
    model = fake_plugins.module("deppkg.model", "\n    from . import helpers\n" + GOOD)
    helpers = fake_plugins.module("deppkg.helpers", "SCALE = 2\n")
    fake_plugins.module("otherpkg.unrelated", "X = 1\n")
    fake_plugins.distribution("dep-plugin", "0.1", {"depnet": "deppkg.model:Up"})
    init = model.parent / "__init__.py"
    code = deps.stage_code(["jasrbench.train"], "depnet")
    assert {str(model), str(helpers), str(init)} <= set(code), code
    assert "jasrbench/models/base.py" in code and not any("otherpkg" in f for f in code)
    assert deps.model_specific_code("depnet")[0] == str(model)
    # Three files of its own: the model's file and the package folder fill the two slots dvc.yaml declares.
    assert dag._model_code_slots("depnet") == {"code": str(model), "code2": str(model.parent)}
    digest = deps.code_digest(code)
    helpers.write_text("SCALE = 3\n")
    changed = {f for f, h in deps.code_digest(code).items() if digest[f] != h}
    assert changed == {str(helpers)}

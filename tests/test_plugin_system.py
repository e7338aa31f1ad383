"""The plugin system: discovery, isolation of broken plugins, conflicts, misspellings, close matches."""

from __future__ import annotations

import types

import pytest

from cqdkit.errors import PluginError, UnknownNameError
from cqdkit.plugin import (
    AUTOLOAD_ENV,
    Backbone,
    BackboneCatalog,
    Degradation,
    DistillLoss,
    PluginClashWarning,
    PluginManager,
    hookimpl,
)

GOOD_PLUGIN = """
from cqdkit.plugin import Degradation, hookimpl

@hookimpl
def cqdkit_degradations():
    yield Degradation(name="fake-blur", summary="A fake degradation", factory=lambda **kw: None)
"""


def degradation_plugin(*names: str) -> object:
    """A plugin object yielding degradations with the given names."""

    class Plugin:
        @hookimpl
        def cqdkit_degradations(self):
            for name in names:
                yield Degradation(name=name, summary=f"test {name}", factory=dict)

    return Plugin()


def test_entry_point_discovery_reports_distribution(fake_distribution):
    fake_distribution("cqdkit-fake", "1.2.3", {"fake": "fake_plugin"}, {"fake_plugin": GOOD_PLUGIN})
    manager = PluginManager(autoload=True)
    entry = manager.degradation("fake-blur")
    assert entry.summary == "A fake degradation"
    provider = next(p.plugin for p in manager.provided("degradation") if p.entry.name == "fake-blur")
    assert (provider.name, provider.dist, provider.version) == ("fake", "cqdkit-fake", "1.2.3")
    assert provider in manager.third_party()


def test_plugin_that_fails_to_import_is_reported_and_skipped(fake_distribution):
    fake_distribution(
        "cqdkit-broken", "0.1", {"broken": "broken_plugin"}, {"broken_plugin": "raise RuntimeError('boom')"}
    )
    fake_distribution("cqdkit-fake", "1.0", {"fake": "fake_plugin"}, {"fake_plugin": GOOD_PLUGIN})
    manager = PluginManager(autoload=True)
    assert manager.degradation("fake-blur").name == "fake-blur"  # other plugins still work
    [failure] = [f for f in manager.failures if f.plugin.name == "broken"]
    assert failure.stage == "import"
    text = failure.describe()
    assert "cqdkit-broken 0.1" in text and "RuntimeError: boom" in text
    with pytest.raises(UnknownNameError, match="cqdkit-broken"):
        manager.degradation("missing-one")  # the error points at the broken plugin


def test_plugin_that_raises_in_its_hook_is_isolated(cqdkit_plugin_manager, register_plugin):
    class Raising:
        @hookimpl
        def cqdkit_degradations(self):
            raise ValueError("bad hook")
            yield  # pragma: no cover

        @hookimpl
        def cqdkit_losses(self):
            yield DistillLoss(name="fine-loss", summary="still fine", factory=dict)

    register_plugin(Raising(), name="raising")
    register_plugin(degradation_plugin("ok-deg"), name="healthy")
    assert "ok-deg" in {e.name for e in cqdkit_plugin_manager.entries("degradation")}
    assert cqdkit_plugin_manager.loss("fine-loss").summary == "still fine"  # its other hook works
    [failure] = cqdkit_plugin_manager.failures
    assert failure.plugin.name == "raising" and failure.stage == "cqdkit_degradations"
    assert "ValueError: bad hook" in failure.describe()


def test_hook_yielding_wrong_type_is_a_failure(cqdkit_plugin_manager, register_plugin):
    class WrongType:
        @hookimpl
        def cqdkit_losses(self):
            yield Degradation(name="not-a-loss", summary="wrong kind", factory=dict)

    register_plugin(WrongType(), name="wrong-type")
    assert "not-a-loss" not in {e.name for e in cqdkit_plugin_manager.entries("loss")}
    assert "expected DistillLoss" in cqdkit_plugin_manager.failures[0].describe()


def test_a_name_provided_twice_keeps_the_first_and_warns_naming_both(cqdkit_plugin_manager, register_plugin):
    first, second = degradation_plugin("dup"), degradation_plugin("dup", "other")
    register_plugin(first, name="first-plugin")
    register_plugin(second, name="second-plugin")
    with pytest.warns(PluginClashWarning) as caught:
        kept = cqdkit_plugin_manager.provider("degradation", "dup")
    assert kept.name == "first-plugin"
    assert cqdkit_plugin_manager.degradation("other").name == "other"  # the rest of the plugin still counts
    [warning] = caught
    assert "'dup'" in str(warning.message) and "first-plugin" in str(warning.message)
    assert "second-plugin" in str(warning.message)
    [clash] = cqdkit_plugin_manager.clashes
    assert (clash.kept.name, clash.skipped.name) == ("first-plugin", "second-plugin")
    cqdkit_plugin_manager.provided("degradation")  # asked again: no second warning, no second record
    assert len(cqdkit_plugin_manager.clashes) == 1
    cqdkit_plugin_manager.unregister("second-plugin")  # the clash is gone with the plugin
    assert cqdkit_plugin_manager.clashes_for("degradation") == []


def test_misspelt_hook_is_an_error(cqdkit_plugin_manager):
    module = types.ModuleType("typo_plugin")

    @hookimpl
    def cqdkit_degradation():  # missing the final "s"
        return []

    module.cqdkit_degradation = cqdkit_degradation
    with pytest.raises(PluginError, match="cqdkit_degradation.*did you mean 'cqdkit_degradations'"):
        cqdkit_plugin_manager.register(module)
    assert not cqdkit_plugin_manager.pm.has_plugin("typo_plugin")


def test_marked_hook_with_unknown_name_is_an_error(cqdkit_plugin_manager):
    class Plugin:
        @hookimpl
        def make_degradations(self):
            return []

    with pytest.raises(PluginError, match="make_degradations"):
        cqdkit_plugin_manager.register(Plugin(), name="odd")


def test_hook_with_unknown_argument_is_an_error(cqdkit_plugin_manager):
    class Plugin:
        @hookimpl
        def cqdkit_losses(self, config):
            return []

    with pytest.raises(PluginError, match="config"):
        cqdkit_plugin_manager.register(Plugin(), name="with-args")


def test_unknown_name_suggests_close_matches(cqdkit_plugin_manager, register_plugin):
    register_plugin(degradation_plugin("solarize", "posterize", "vignette"), name="some")
    with pytest.raises(UnknownNameError) as info:
        cqdkit_plugin_manager.degradation("solarise")
    assert info.value.matches[0] == "solarize"
    assert "did you mean 'solarize'" in str(info.value)
    assert isinstance(info.value, KeyError)


def test_disabling_autoload_by_environment(fake_distribution, monkeypatch):
    fake_distribution("cqdkit-fake", "1.0", {"fake": "fake_plugin"}, {"fake_plugin": GOOD_PLUGIN})
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    manager = PluginManager()
    assert not manager.autoload
    assert manager.third_party() == []
    with pytest.raises(UnknownNameError):
        manager.degradation("fake-blur")
    monkeypatch.setenv(AUTOLOAD_ENV, "0")
    assert PluginManager().degradation("fake-blur").name == "fake-blur"


def test_builtins_are_ordinary_plugins():
    manager = PluginManager(autoload=False)
    builtin = [info for info in manager.plugins() if info.builtin]
    assert builtin, "built-in plugins are registered"
    assert all(manager.pm.has_plugin(info.name) for info in builtin)
    for info in builtin:  # registered through pluggy like any third-party plugin
        assert manager.pm.get_hookcallers(manager.pm.get_plugin(info.name))


def test_named_backbones_take_precedence_over_catalogs(cqdkit_plugin_manager, register_plugin):
    calls = []

    class Zoo:
        @hookimpl
        def cqdkit_backbones(self):
            yield BackboneCatalog(
                name="zoo",
                summary="a lazily resolved zoo",
                contains=lambda name: name in {"shared", "zoo-only"},
                list_names=lambda pattern: ["shared", "zoo-only"],
                factory=lambda name, **kw: calls.append(("zoo", name, kw)),
            )

    class Own:
        @hookimpl
        def cqdkit_backbones(self):
            yield Backbone(name="shared", summary="our own", factory=lambda **kw: calls.append(("own", kw)))

    register_plugin(Zoo(), name="zoo-plugin")
    register_plugin(Own(), name="own-plugin")
    cqdkit_plugin_manager.backbone("shared").factory(num_classes=3)
    cqdkit_plugin_manager.backbone("zoo-only").factory(num_classes=5)
    assert calls == [("own", {"num_classes": 3}), ("zoo", "zoo-only", {"num_classes": 5})]
    names = [name for name, _ in cqdkit_plugin_manager.list_backbones("*")]
    assert names.count("shared") == 1 and "zoo-only" in names
    with pytest.raises(UnknownNameError, match="did you mean 'zoo-only'"):
        cqdkit_plugin_manager.backbone("zoo-onyl")


def test_entries_validate_names_and_summaries():
    with pytest.raises(ValueError, match="name"):
        Degradation(name="Bad Name", summary="x", factory=dict)
    with pytest.raises(ValueError, match="summary"):
        Degradation(name="ok", summary="two\nlines", factory=dict)


def test_register_plugin_fixture_registers_for_the_test(cqdkit_plugin_manager, register_plugin):
    name = register_plugin(degradation_plugin("temporary"), name="temp")
    assert cqdkit_plugin_manager.pm.has_plugin(name)
    assert cqdkit_plugin_manager.degradation("temporary").name == "temporary"


def test_dataset_hook_provides_a_loadable_dataset(cqdkit_plugin_manager, register_plugin, tmp_path):
    from cqdkit.data import ImageDataset, Record, load_dataset
    from cqdkit.plugin import DatasetSource

    def tiny(root, *, skip_bad=False, classes=2):
        records = [Record(id=str(i), path=root / f"{i}.png", label=i % classes) for i in range(4)]
        return ImageDataset("tiny", root, [f"c{i}" for i in range(classes)], records, records[:2], False)

    class Plugin:
        @hookimpl
        def cqdkit_datasets(self):
            yield DatasetSource(name="tiny", summary="four records", factory=tiny, options={"classes": 2})

    register_plugin(Plugin(), name="tiny-data")
    dataset = load_dataset("tiny", tmp_path, classes="3", manager=cqdkit_plugin_manager)
    assert dataset.classes == ["c0", "c1", "c2"] and len(dataset.train) == 4
    with pytest.raises(UnknownNameError, match="option"):
        load_dataset("tiny", tmp_path, colours="3", manager=cqdkit_plugin_manager)

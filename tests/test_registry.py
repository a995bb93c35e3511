"""The one registry: names, build by name, did-you-mean, user option errors vs our TypeErrors."""

from __future__ import annotations

import inspect
import traceback
from typing import Any

import pytest
import torch
from torch import nn

import landlearn.data.augment as augment
import landlearn.losses as losses
import landlearn.models.classifiers as classifiers
from landlearn.data.augment import build_augment, list_augmentations
from landlearn.errors import LandlearnError
from landlearn.losses import build_loss, list_losses
from landlearn.models import build_model
from landlearn.registry import Registry, check_options, did_you_mean, unknown_name
from landlearn.tasks.optim import (
    build_optimizer,
    build_scheduler,
    list_optimizers,
    list_schedulers,
)


def _toy() -> Registry[int]:
    reg: Registry[int] = Registry("widget")

    @reg.register("square", colour="red")
    def _square(x: int, *, scale: int = 1) -> int:
        return x * x * scale

    @reg.register("broken")
    def _broken(x: int) -> int:
        return len(x)  # type: ignore[arg-type]  # a bug inside: TypeError on an int

    return reg


def test_names_build_and_tags() -> None:
    reg = _toy()
    assert reg.names() == ["broken", "square"]
    assert reg.in_order() == ["square", "broken"]
    assert "square" in reg
    assert "circle" not in reg
    assert len(reg) == 2
    assert reg.build("square", 3, scale=2) == 18
    assert reg.tags("square") == {"colour": "red"}


def test_unknown_name_says_nearest_or_lists_known() -> None:
    reg = _toy()
    with pytest.raises(LandlearnError, match=r"^unknown widget 'sqare'; did you mean 'square'\?$"):
        reg.build("sqare", 3)
    with pytest.raises(LandlearnError, match=r"^unknown widget 'zzz'; known: broken, square$"):
        reg.get("zzz")


def test_duplicate_registration_is_our_bug() -> None:
    reg = _toy()
    with pytest.raises(RuntimeError, match="registered twice"):
        reg.register("square")(lambda x: x)


def test_bad_keyword_is_a_user_error_with_the_nearest_option() -> None:
    reg = _toy()
    with pytest.raises(
        LandlearnError,
        match=r"^bad options for widget 'square': unknown option 'scal'; did you mean 'scale'\?$",
    ):
        reg.build("square", 3, scal=2)
    with pytest.raises(LandlearnError, match="unknown option 'zzz'; options: scale"):
        reg.build("square", 3, zzz=2)
    with pytest.raises(LandlearnError, match="widget 'broken': it takes no options"):
        reg.build("broken", 3, scale=2)
    with pytest.raises(LandlearnError, match="missing a required argument: 'x'"):
        reg.build("square")


def test_type_error_inside_a_builder_keeps_its_traceback() -> None:
    with pytest.raises(TypeError, match="has no len") as info:
        _toy().build("broken", 3)
    assert not isinstance(info.value, LandlearnError)
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert frames[-1] == "_broken"  # raised where the bug is, not re-raised by the registry


def test_check_options_takes_a_signature_and_open_ended_builders() -> None:
    def open_ended(*, a: int = 1, **rest: Any) -> None: ...

    check_options(open_ended, "thing", (), {"anything": 1})  # **rest takes it: no error
    sig = inspect.Signature([inspect.Parameter("a", inspect.Parameter.KEYWORD_ONLY, default=1)])
    with pytest.raises(LandlearnError, match="unknown option 'b'; options: a"):
        check_options(sig, "thing", (), {"b": 2})


def test_did_you_mean_helpers() -> None:
    assert did_you_mean("adamww", ["adam", "adamw"]) == "did you mean 'adamw'?"
    assert did_you_mean("x", ["a", "b"]) == "known: a, b"
    assert did_you_mean("x", ["a", "b"], otherwise="") == ""
    err = unknown_name("encoder", "qqq", ["resnet18"], "see the list")
    assert isinstance(err, LandlearnError)
    assert err.message == "unknown encoder 'qqq'; see the list"


# ---- every registered entry, so a new one is tested for free --------------------------------


def _params() -> list[nn.Parameter]:
    return [nn.Parameter(torch.zeros(3))]


def _schedule(name: str, **options: Any) -> dict[str, Any] | None:
    opt = build_optimizer(_params(), "sgd", lr=0.1)
    return build_scheduler(
        opt, name, lr=0.1, max_epochs=4, total_steps=8, monitor="val_loss", monitor_mode="min",
        **options,
    )  # fmt: skip


def test_registries_list_their_names() -> None:
    assert list_optimizers() == ["adam", "adamw", "rmsprop", "sgd"]
    assert list_schedulers() == ["cosine", "cyclic", "none", "onecycle", "plateau", "step"]
    assert list_augmentations() == [
        "hflip", "vflip", "rot90", "crop", "brightness", "contrast", "blur"
    ]  # fmt: skip
    assert {"ce", "dice", "focal", "lovasz"} <= set(list_losses())


@pytest.mark.parametrize("name", list_losses())
def test_every_loss_refuses_an_unknown_option(name: str) -> None:
    with pytest.raises(LandlearnError, match=f"bad options for loss '{name}': unknown option"):
        build_loss({"name": name, "not_an_option": 1}, num_classes=3)


def test_loss_option_set_by_the_task_is_refused() -> None:
    with pytest.raises(LandlearnError, match="mode is set by the task"):
        build_loss({"name": "ce", "mode": "multiclass"}, num_classes=3)


@pytest.mark.parametrize("name", list_schedulers())
def test_every_schedule_refuses_an_unknown_option(name: str) -> None:
    with pytest.raises(LandlearnError, match=f"bad options for scheduler '{name}'"):
        _schedule(name, not_an_option=1)


def test_schedule_option_typo_names_the_option() -> None:
    with pytest.raises(LandlearnError, match="unknown option 'gama'; did you mean 'gamma'"):
        _schedule("step", gama=0.5)
    with pytest.raises(LandlearnError, match="unknown cyclic mode 'triangle'"):
        _schedule("cyclic", mode="triangle")


@pytest.mark.parametrize("name", list_augmentations())
def test_every_augmentation_refuses_an_unknown_option(name: str) -> None:
    with pytest.raises(LandlearnError, match=f"unknown option 'not_an_option' of {name}"):
        build_augment({name: {"not_an_option": 1}}, "segmentation")


@pytest.mark.parametrize("name", list_augmentations())
def test_every_augmentation_builds_from_its_defaults(name: str) -> None:
    aug = build_augment({name: 1.0}, "segmentation")
    out = aug({"image": torch.rand(2, 3, 16, 16), "mask": torch.zeros(2, 16, 16, dtype=torch.long)})
    assert out["image"].shape == (2, 3, 16, 16)
    assert out["mask"].shape == (2, 16, 16)


def test_small_cnn_refuses_an_unknown_option() -> None:
    with pytest.raises(LandlearnError, match="unknown option 'widht'; did you mean 'width'"):
        build_model("small_cnn", in_channels=3, num_classes=2, widht=8)


# ---- a TypeError raised inside a builder is a bug: it is not turned into a user error -------


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise TypeError("bug inside the builder")


def test_loss_builder_type_error_is_not_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(losses, "CrossEntropy", _boom)
    with pytest.raises(TypeError, match="bug inside the builder") as info:
        build_loss("ce", num_classes=3)
    assert not isinstance(info.value, LandlearnError)


def test_optimizer_builder_type_error_is_not_a_user_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.optim, "AdamW", _boom)
    with pytest.raises(TypeError, match="bug inside the builder"):
        build_optimizer(_params(), "adamw", lr=0.1)


def test_schedule_builder_type_error_is_not_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.optim.lr_scheduler, "CosineAnnealingLR", _boom)
    with pytest.raises(TypeError, match="bug inside the builder"):
        _schedule("cosine")


def test_augmentation_builder_type_error_is_not_a_user_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(augment.K, "RandomHorizontalFlip", _boom)
    aug = build_augment({"hflip": 1.0}, "segmentation")  # ops are built on first use
    with pytest.raises(TypeError, match="bug inside the builder"):
        aug({"image": torch.rand(1, 3, 8, 8)})


def test_model_builder_type_error_is_not_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classifiers, "SmallCNN", _boom)
    with pytest.raises(TypeError, match="bug inside the builder"):
        build_model("small_cnn", in_channels=3, num_classes=2)

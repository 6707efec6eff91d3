"""plugin.hooks: which exceptions a hook call turns into a named plugin failure."""

from __future__ import annotations

import types

import pytest
from django.db import InterfaceError, OperationalError, ProgrammingError

from pulp_content_asgi.plugin import hooks


class Remote:
    def get_remote_artifact_url(self, path: str, request: object = None) -> str:
        raise KeyError(path)

    def permit(self, request: object) -> None:
        raise PermissionError("no")


def test_a_raising_hook_is_named_with_its_cause():
    with pytest.raises(hooks.PluginHookFailed) as failed:
        hooks.call(Remote(), "get_remote_artifact_url", "a.rpm", request=None)
    assert failed.value.hook == "Remote.get_remote_artifact_url"
    assert failed.value.plugin == "tests"  # no Django app: the module's package
    assert isinstance(failed.value.cause, KeyError)
    assert str(failed.value) == ("Plugin tests failed in Remote.get_remote_artifact_url: "
                                 "KeyError: 'a.rpm'")
    assert failed.value.client_message.startswith("The tests plugin failed in Remote.")


def test_allowed_exceptions_and_lost_connections_pass_through():
    with pytest.raises(PermissionError):
        hooks.call(Remote(), "permit", None, allowed=(PermissionError,))
    for lost in (OperationalError("gone"), InterfaceError("closed")):
        def hook(exc: Exception = lost) -> None:
            raise exc

        with pytest.raises(type(lost)):
            hooks.call(types.SimpleNamespace(hook=hook), "hook")


def test_a_bad_query_is_the_plugins_fault():
    def hook() -> None:
        raise ProgrammingError("column does not exist")

    with pytest.raises(hooks.PluginHookFailed):
        hooks.call(types.SimpleNamespace(hook=hook), "hook")


def test_helpers_of_a_plugin_module_are_named_by_module():
    module = types.ModuleType("pulp_fake.app.utils")
    module.build = lambda: 1 / 0  # type: ignore[attr-defined]
    with pytest.raises(hooks.PluginHookFailed) as failed:
        hooks.call(module, "build")
    assert (failed.value.plugin, failed.value.hook) == ("pulp_fake", "pulp_fake.app.utils.build")


def test_models_are_named_by_their_django_app():
    from pulp_file.app.models import FileDistribution
    from pulpcore.app.models import HeaderContentGuard

    assert hooks.plugin_of(FileDistribution) == "pulp_file"
    assert hooks.plugin_of(HeaderContentGuard) == "pulpcore"

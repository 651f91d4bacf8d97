"""A plugin's hooks declared in one statement, forwarded to an implementation module that is
imported on first use (as fsspec registers filesystems by dotted path).

A plugin's hook module is then a few lines that import only tlcore, so ``tlcore plugins``
and reader choice stay fast::

    from tlcore import ReaderHooks, ReaderInfo

    hooks = ReaderHooks(
        ReaderInfo(name="my-format", extensions=(".myf",), description="My format"),
        "my_package.image",
    )

with the entry point ``my-format = "my_package.reader"`` (a module's ``hooks`` is the plugin;
``"my_package.reader:hooks"`` says the same). ``my_package.image`` defines
the hook functions it has, under the hooks' names and signatures (``can_open(source)``,
``list_scenes(source)``, ``levels(source, scene)``, ``time_axis(source, scene)``,
``open_lazy(source, scene, level)``); a hook it does not define answers None, which tlcore
reads as "not implemented" (one scene, one level, the time axis of the opened image). Keyword
arguments given to :class:`ReaderHooks` are passed to every call, so one implementation module
can serve several readers. Hand-written ``@tlcore.hookimpl`` functions keep working.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tlcore.readers.hookspecs import hookimpl

if TYPE_CHECKING:
    from tlcore.images import LazyImage
    from tlcore.io.source import Source
    from tlcore.types import Level, ReaderInfo, TimeAxis

__all__ = ["ReaderHooks"]


class ReaderHooks:
    """The hooks of one reader, each forwarded to the function of the same name in
    ``module``, imported on the first call that needs it.

    Args:
        info: what :func:`~tlcore.readers.hookspecs.reader_info` returns.
        module: the dotted path of the implementation module.
        **bound: keyword arguments added to every forwarded call (``mode="ome"``).
    """

    def __init__(self, info: ReaderInfo, module: str, **bound: Any) -> None:
        self.info = info
        self.module = module
        self.bound = bound
        self._module: ModuleType | None = None

    def implementation(self) -> ModuleType:
        """The implementation module, imported now if it was not yet."""
        if self._module is None:
            self._module = importlib.import_module(self.module)
        return self._module

    def _forward(self, hook: str, *args: Any) -> Any:
        function = getattr(self.implementation(), hook, None)
        if function is None:
            if hook == "open_lazy":
                raise TypeError(f"{self.module} defines no open_lazy(source, scene, level)")
            return None
        return function(*args, **self.bound)

    @hookimpl
    def reader_info(self) -> ReaderInfo:
        return self.info

    @hookimpl
    def can_open(self, source: Source) -> bool | str | None:
        result: bool | str | None = self._forward("can_open", source)
        return result

    @hookimpl
    def list_scenes(self, source: Source) -> list[str] | None:
        result: list[str] | None = self._forward("list_scenes", source)
        return result

    @hookimpl
    def levels(self, source: Source, scene: int) -> list[Level] | None:
        result: list[Level] | None = self._forward("levels", source, scene)
        return result

    @hookimpl
    def time_axis(self, source: Source, scene: int) -> TimeAxis | None:
        result: TimeAxis | None = self._forward("time_axis", source, scene)
        return result

    @hookimpl
    def open_lazy(self, source: Source, scene: int, level: int) -> LazyImage | None:
        result: LazyImage | None = self._forward("open_lazy", source, scene, level)
        return result

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_module": None}

    def __repr__(self) -> str:
        return f"<ReaderHooks {self.info.name!r} -> {self.module}>"

"""The reader registry: the hook specification (:mod:`~tlcore.readers.hookspecs`), plugin
hooks declared without boilerplate (:mod:`~tlcore.readers.hooks`), discovery through the
``tlcore.readers`` entry points and the choice of one reader per source
(:mod:`~tlcore.readers.registry`), the four entry points (:mod:`~tlcore.readers.api`) and the
per-process cache of opened images (:mod:`~tlcore.readers.cache`).

The core never imports a plugin; plugins import only this layer and :mod:`tlcore.lazy`.
"""

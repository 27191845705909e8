"""The registry of layer kinds: names (Conv2D, conv2d), one-line words (conv, pool) and file types to kinds."""
from __future__ import annotations

import dataclasses
import functools

from convolab.errors import SpecError
from convolab.layers.arguments import suggestion
from convolab.layers.base import LayerKind


def _check_keyword_names(kind: type) -> None:
    """Make a misspelt keyword (Conv2D(64, 3, filter=8)) a SpecError naming the nearest argument, like the files."""
    generated_init = kind.__init__
    names = [field.name for field in dataclasses.fields(kind)]

    @functools.wraps(generated_init)
    def __init__(self, *args, **kwargs):
        for key in kwargs:
            if key not in names:
                raise SpecError(f"{kind.__name__}: unknown argument {key!r}; expected one of {', '.join(names)}",
                                fix=suggestion(key, names) or f"use one of {', '.join(names)}")
        generated_init(self, *args, **kwargs)

    kind.__init__ = __init__


class Registry:
    """Every layer kind convolab knows, in the order the grammar's help lists them."""

    def __init__(self, *kinds: type[LayerKind]):
        self.kinds: dict[str, type[LayerKind]] = {}
        self.by_word: dict[str, type[LayerKind]] = {}
        self._by_lower: dict[str, type[LayerKind]] = {}
        for kind in kinds:
            self.add(kind)

    def add(self, kind: type[LayerKind]) -> type[LayerKind]:
        clashes = [word for word in kind.token_words if word in self.by_word] + \
            ([kind.__name__] if kind.__name__ in self.kinds else [])
        if clashes:
            raise ValueError(f"{kind.__name__}: {clashes[0]!r} is registered already")
        _check_keyword_names(kind)
        self.kinds[kind.__name__] = kind
        self.by_word.update({word: kind for word in kind.token_words})
        self._by_lower.update({kind.__name__.lower(): kind, kind.keras_name: kind})
        return kind

    def __iter__(self):
        return iter(self.kinds.values())

    def __contains__(self, name: str) -> bool:
        return name in self.kinds

    def named(self, name: str) -> type[LayerKind] | None:
        """The kind called `name` ('Conv2D', 'conv2d', Keras's 'max_pooling2d'), or None."""
        return self._by_lower.get(str(name).lower())

    def for_word(self, word: str) -> type[LayerKind] | None:
        """The kind a one-line word makes ('conv', 'pool'), or None."""
        return self.by_word.get(word)

    @property
    def words(self) -> list[str]:
        return list(self.by_word)

    def token_form(self, word: str) -> str:
        return self.by_word[word].token_forms.get(word, word)

    def grammar(self) -> str:
        """The kinds' lines of the grammar's help, in registry order."""
        return "\n".join(kind.grammar for kind in self if kind.grammar)

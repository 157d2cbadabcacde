"""The one table of output kinds: what a model's graph outputs, and how two runs of it are compared.

Each row of :class:`OutputKind` is an output kind: its name (the manifest's ``model.output``), the
rank of its output tensor, the layout text messages show, whether it holds class scores, and how
agreement between two runs is measured ("top-1" for class logits, "k-NN" for embeddings). An output
kind is added here, as one more row, and nowhere else; a member compares and serializes as its name.
"""

from __future__ import annotations

from enum import Enum


class OutputKind(str, Enum):
    """One output kind: ``rank`` (of the output tensor), ``layout`` (its dims, for messages),
    ``classes`` (it holds class scores: top-1 and accuracy apply; else an embedding, compared by k-NN
    agreement and cosine and judged without labels), ``agreement`` ("top-1" or "k-NN"), ``own`` (what a
    model's ``forward`` returns, by its head; else only asked for: ``tokens`` is ``forward_tokens``, written
    by ``edgevit export --output-kind tokens``)."""

    def __new__(cls, name: str, rank: int, layout: str, classes: bool, agreement: str, own: bool) -> "OutputKind":
        member = str.__new__(cls, name)
        member._value_ = name
        member.rank, member.layout, member.classes, member.agreement = rank, layout, classes, agreement
        member.own = own
        return member

    __str__ = str.__str__
    __format__ = str.__format__
    __hash__ = str.__hash__

    def __repr__(self) -> str:
        return repr(self.value)

    LOGITS = ("logits", 2, "(batch, classes)", True, "top-1", True)
    FEATURES = ("features", 2, "(batch, dim)", False, "k-NN", True)
    TOKENS = ("tokens", 3, "(batch, patches, dim)", False, "k-NN", False)


OUTPUT_KINDS = tuple(k.value for k in OutputKind)
"""The names of the output kinds, in table order."""
FEATURE_OUTPUTS = tuple(k.value for k in OutputKind if not k.classes)
"""The output kinds without classes (embeddings: compared by k-NN agreement and cosine, judged without labels)."""


def output_kind(name: str, what: str = "output") -> OutputKind:
    """The row named ``name``; ValueError naming the known kinds (``what`` names the option or key)."""
    try:
        return OutputKind(name)
    except ValueError:
        raise ValueError(f"{what} must be one of {list(OUTPUT_KINDS)}, got {name!r}") from None


def kinds_of_rank(rank: int) -> list[OutputKind]:
    """The output kinds whose tensor has ``rank`` dims."""
    return [k for k in OutputKind if k.rank == rank]


def kind_of_output_name(name: str | None) -> OutputKind:
    """The kind a graph whose single output is called ``name`` holds: that kind when the name is one of
    the embedding kinds' names (edgevit names a graph's output after its kind), else logits."""
    return OutputKind(name) if name in FEATURE_OUTPUTS else OutputKind.LOGITS


__all__ = ["FEATURE_OUTPUTS", "OUTPUT_KINDS", "OutputKind", "kind_of_output_name",
           "kinds_of_rank", "output_kind"]

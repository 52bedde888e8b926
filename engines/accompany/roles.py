"""The source labels the model knows, prompt parsing and the paper's negative prompts.

A prompt is a comma-separated list of labels ("piano, strings"); labels are matched case-insensitively
against ROLES (plus a few synonyms), and a label set is always written in ROLES order ("Bass, Drums"), so
"drums, bass" and "Bass, Drums" are the same text and the same cached embedding.
"""

from __future__ import annotations

from collections.abc import Iterable

from backline.engines.core.errors import ConfigError

#: Model roles, in the canonical order of a concatenated label ("Bass, Drums, Piano").
ROLES: tuple[str, ...] = ("Bass", "Drums", "Guitar", "Piano", "Strings", "Lead")
#: The corpus' extras.json role names → model role.
CORPUS_ROLES = {"bass": "Bass", "drums": "Drums", "guitar": "Guitar", "piano": "Piano", "strings": "Strings",
                "lead": "Lead"}
SYNONYMS = {"keys": "Piano", "keyboard": "Piano", "organ": "Piano", "drum": "Drums", "kit": "Drums",
            "guitars": "Guitar", "pad": "Strings", "pads": "Strings", "string": "Strings", "melody": "Lead",
            "synth lead": "Lead", "bass guitar": "Bass"}


def parse_prompt(prompt: str) -> tuple[str, ...]:
    """'piano, strings' → ('Piano', 'Strings') in ROLES order; unknown labels are refused with the known ones."""
    labels = [p.strip().lower() for p in (prompt or "").replace(";", ",").replace("+", ",").split(",")]
    labels = [p for p in labels if p]
    if not labels:
        raise ConfigError("the prompt names no instrument", fix=f"use e.g. --prompt \"piano, strings\" (known: "
                          f"{', '.join(r.lower() for r in ROLES)})")
    found = []
    for label in labels:
        role = next((r for r in ROLES if r.lower() == label), None) or SYNONYMS.get(label)
        if role is None:
            raise ConfigError(f"unknown instrument {label!r} in the prompt",
                              fix=f"known: {', '.join(r.lower() for r in ROLES)}")
        found.append(role)
    return canonical(found)


def canonical(roles: Iterable[str]) -> tuple[str, ...]:
    """Deduplicate and sort roles into ROLES order."""
    chosen = set(roles)
    unknown = chosen - set(ROLES)
    if unknown:
        raise ConfigError(f"unknown role(s) {', '.join(sorted(unknown))}", fix=f"known: {', '.join(ROLES)}")
    return tuple(r for r in ROLES if r in chosen)


def label_text(roles: Iterable[str]) -> str:
    """The text the encoder sees: the concatenated labels, paper 003's z_1 ⊗ … ⊗ z_K ("Bass, Drums")."""
    return ", ".join(canonical(roles))


def negative_prompt(role: str) -> tuple[str, ...]:
    """Paper 003's negative prompts against silent estimates: Bass ← the others of the four; Drums ← Bass;
    Guitar, Piano ← Bass, Drums. Strings and Lead (not in the paper) take Bass, Drums like Guitar/Piano."""
    if role == "Bass":
        return ("Drums", "Guitar", "Piano")
    if role == "Drums":
        return ("Bass",)
    return ("Bass", "Drums")

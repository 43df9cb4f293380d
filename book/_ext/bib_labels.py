"""Author-year labels in the bibliography, matching the in-text citations (bibtex_reference_style).

The text cites "(Goodfellow et al., 2014)"; pybtex's default labels would list the same paper as
"[GPAM+14]", which a reader cannot match by eye. This registers a label style that writes the
bibliography labels the way the text cites: one author, "A and B", or "A et al.", then the year.
"""
from __future__ import annotations

from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from sphinx.application import Sphinx


def _family(person) -> str:
    return " ".join(person.prelast_names + person.last_names).replace("{", "").replace("}", "")


def author_year(entry) -> str:
    """'Goodfellow et al., 2014'; an entry with no author is labelled by its `key` field (or title)."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    year = entry.fields.get("year", "n.d.")
    if not persons:
        name = entry.fields.get("key") or entry.fields.get("title", "?")
        name = name.replace("{", "").replace("}", "")
    elif len(persons) == 1:
        name = _family(persons[0])
    elif len(persons) == 2:
        name = f"{_family(persons[0])} and {_family(persons[1])}"
    else:
        name = f"{_family(persons[0])} et al."
    return f"{name}, {year}"


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [author_year(entry) for entry in entries]
        # Two works with the same label get 2014a, 2014b, as author-year bibliographies do.
        repeated, seen = Counter(labels), Counter()
        for label in labels:
            if repeated[label] > 1:
                seen[label] += 1
                label += "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            yield label


class AuthorYearStyle(PlainStyle):
    default_label_style = "author_year_labels"


def setup(app: Sphinx) -> dict:
    register_plugin("pybtex.style.labels", "author_year_labels", AuthorYearLabels)
    register_plugin("pybtex.style.formatting", "author_year_plain", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

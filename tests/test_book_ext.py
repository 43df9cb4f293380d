"""The book's own Sphinx extensions (book/_ext): bibliography labels that read like the in-text citations."""
import sys
from pathlib import Path

from pybtex.database import Entry, Person

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))
import bib_labels  # noqa: E402


def entry(*authors, year="2014", **fields):
    return Entry("misc", fields={"year": year, **fields}, persons={"author": [Person(a) for a in authors]})


def test_labels_read_like_author_year_citations():
    assert bib_labels.author_year(entry("Goodfellow, Ian")) == "Goodfellow, 2014"
    assert bib_labels.author_year(entry("Mirza, Mehdi", "Osindero, Simon")) == "Mirza and Osindero, 2014"
    assert bib_labels.author_year(entry("Goodfellow, Ian", "Pouget-Abadie, Jean", "Mirza, Mehdi")) == \
        "Goodfellow et al., 2014"
    assert bib_labels.author_year(entry("van den Oord, Aaron", year="2017")) == "van den Oord, 2017"


def test_an_entry_without_author_uses_its_key_and_no_date():
    article = Entry("misc", fields={"title": "{PyTorch实现经典GAN模型}", "key": "PyTorch实现经典GAN模型"})
    assert bib_labels.author_year(article) == "PyTorch实现经典GAN模型, n.d."


def test_same_author_and_year_get_letters():
    labels = list(bib_labels.AuthorYearLabels().format_labels(
        [entry("Goodfellow, Ian"), entry("Goodfellow, Ian"), entry("Radford, Alec", year="2015")]))
    assert labels == ["Goodfellow, 2014a", "Goodfellow, 2014b", "Radford, 2015"]

"""The CLI's YAML loader: kinds, specs, order, and errors that name the document and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ensayo.cli.main import load_documents

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "checkout.yaml"


class TestLoadDocuments:
    def test_example_file_loads_in_dependency_order(self) -> None:
        """The shipped example parses, and layers/holdouts/metrics come before experiments."""
        docs = load_documents(EXAMPLE.read_text(), "checkout.yaml")
        kinds = [doc.kind for doc in docs]
        assert kinds.index("Layer") < kinds.index("Experiment")
        assert kinds.index("Metric") < kinds.index("Experiment")
        assert kinds.index("Action") < kinds.index("ContactPolicy")
        exp = next(doc.message for doc in docs if doc.kind == "Experiment")
        assert exp.layer_range.end == 0.5
        assert exp.state == 2  # EXPERIMENT_STATE_RUNNING

    def test_expected_version(self) -> None:
        """expected_version travels with its document."""
        (doc,) = load_documents("kind: Layer\nexpected_version: 0\nspec: {key: l}\n", "f")
        assert doc.expected_version == 0
        assert doc.where == "f: document 1"

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("kind: Widget\nspec: {key: w}", "document 1: kind must be one of"),
            ("kind: Layer\nkey: l", "unknown top-level keys"),
            ("kind: Layer\nspec: [1]", "spec must be a mapping"),
            ("kind: Layer\nspec: {key: l, colour: red}", r"document 1 \(Layer\): colour"),
            (
                "kind: Layer\nspec: {key: l}\n---\nkind: Metric\nspec: {key: m, kind: avg}",
                r"document 2 \(Metric\): kind: invalid value",
            ),
            ("kind: Layer\nspec: {key: [", r"f: not valid YAML"),  # was a traceback
        ],
    )
    def test_errors_name_document_and_field(self, text: str, message: str) -> None:
        """Bad YAML definitions fail before any call, naming where."""
        with pytest.raises(ValueError, match=message):
            load_documents(text, "f")

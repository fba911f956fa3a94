"""ogbn-arxiv / ogbn-products: the offline and missing-package errors (no OGB data here)."""

from __future__ import annotations

import pytest

from mskd import ogb_data
from mskd.cli import main
from mskd.config import preset
from mskd.data import DataError, canonical_name, load_dataset


@pytest.mark.parametrize("name", ogb_data.OGB_DATASETS)
def test_offline_without_data_is_a_clear_error(name, tmp_path):
    with pytest.raises(DataError, match=rf"dataset {name} not found: missing .*OGB.*MSKD_OFFLINE"):
        load_dataset(name, tmp_path)


def test_missing_ogb_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv("MSKD_OFFLINE")
    monkeypatch.setattr(ogb_data, "_import_ogb", lambda: None)
    with pytest.raises(DataError, match="needs the ogb package: pip install ogb"):
        load_dataset("ogbn-arxiv", tmp_path)


def test_cli_offline_ogb_is_one_line_exit_2(tmp_path, capsys):
    code = main(["distill", "--dataset", "ogbn-products", "--data-root", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("mskd: error: dataset ogbn-products not found")
    assert err.count("\n") == 1


def test_ogb_names_and_presets():
    assert canonical_name("OGBN_Arxiv") == "ogbn-arxiv"
    for name in ogb_data.OGB_DATASETS:
        cfg = preset(name)
        cfg.validate()
        assert cfg.scale.sampler == "neighbor"

"""The leaderboard's caption and headline say what happened: fields a record lacks, one seed, rows at different K."""

from __future__ import annotations

import pandas as pd

from vaebench.reporting.leaderboard import caption, leaderboard, to_markdown

IS_NLL = {"name": "is_nll", "direction": "lower", "unit": "nats", "description": "IS-NLL", "label": "IS-NLL", "headline": True, "digits": 2}
K = {"name": "is_samples", "direction": "none", "unit": "", "description": "K", "label": "K", "text": True}
WALL = {"name": "wall_seconds", "direction": "none", "unit": "s", "description": "wall", "digits": 1}


def record(run, seed, is_nll, k=5000, **extra):
    return {"run": run, "variant": run, "seed": seed, "status": "ok", "is_nll": is_nll, "is_samples": k, "dataset": "mnist",
            "binarization": "dynamic", "columns": [IS_NLL, K, WALL], **extra}


def test_a_record_without_the_binarisation_seed_is_not_another_seed():
    board = leaderboard(pd.DataFrame([record("a", 0, 90.0, test_binarization_seed=1234), record("b", 0, 91.0)]))
    text = caption(board)
    assert "binarised once with seed 1234" in text and "mixed" not in text


def test_a_one_seed_table_says_it_has_no_spread():
    board = leaderboard(pd.DataFrame([record("a", 0, 90.0), record("b", 0, 91.0)]))
    assert "one seed (0) per row, so no spread is shown" in caption(board) and "ddof" not in caption(board)
    several = leaderboard(pd.DataFrame([record("a", s, 90.0 + s) for s in (0, 1)]))
    assert "mean ± sample std (ddof = 1) over seeds 0,1" in caption(several)


def test_rows_at_different_k_show_their_k_in_the_headline_table():
    board = leaderboard(pd.DataFrame([record("a", 0, 90.0, k=5000), record("b", 0, 91.0, k=1000)]))
    lines = to_markdown(board).splitlines()
    header = next(line for line in lines if line.startswith("| rank"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[cells.index("IS-NLL") + 1] == "K"
    assert any(line.startswith("| 1 | a |") and "| 5000 |" in line for line in lines)
    assert "the K column gives each row's" in caption(board)
    same = to_markdown(leaderboard(pd.DataFrame([record("a", 0, 90.0), record("b", 0, 91.0)])))
    assert "| K |" not in next(line for line in same.splitlines() if line.startswith("| rank"))


def test_a_mean_over_fewer_seeds_than_the_row_has_says_so():
    rows = [record("a", 0, 90.0, wall_seconds=None, wall_seconds_na="resumed"), record("a", 1, 90.2, wall_seconds=10.0),
            record("a", 2, 90.1, wall_seconds=12.0)]
    board = leaderboard(pd.DataFrame(rows))
    assert board.loc[0, "wall_seconds"] == 11.0
    assert "wall_seconds over 2 of 3 seeds (seed 0 n/a: resumed)" in to_markdown(board)


def test_rows_are_ranked_only_against_rows_measured_on_the_same_test_data_with_the_same_k():
    rows = [record("a", 0, 86.1, epochs=3280, select_epoch="last"), record("a", 1, 86.2, epochs=3280, select_epoch="last"),
            record("b", 0, 91.8, binarization="static", epochs=500, select_epoch="best-val"),
            record("c", 0, 88.0, epochs=100, select_epoch="best-val")]
    board = leaderboard(pd.DataFrame(rows))
    assert dict(zip(board["run"], board["rank"])) == {"a": "1", "c": "2", "b": "1"}  # static b: its own group
    assert list(board["run"]) == ["a", "c", "b"]  # group by group
    text = caption(board)
    assert "each is ranked only against those that were" in text and "Rank by IS-NLL" in text
    assert "each row's setting states its own" in text and "mixed (best-val" not in text
    assert "over each row's seeds" in text
    header = next(line for line in to_markdown(board).splitlines() if line.startswith("| rank"))
    assert "| binarization |" in header and "| dataset |" not in header  # the differing grouping setting is shown per row
    same_data = leaderboard(pd.DataFrame([record("a", 0, 90.0), record("b", 0, 91.0)]))
    assert list(same_data["rank"]) == ["1", "2"] and "Rank by IS-NLL" in caption(same_data)
    assert "| binarization |" not in to_markdown(same_data)


def test_two_datasets_in_one_suite_are_ranked_apart_and_the_table_names_each_rows():
    rows = [record("gaussian-digits", 0, 25.0, dataset="digits"), record("vamp-digits", 0, 24.5, dataset="digits"),
            record("gaussian-mnist", 0, 89.0), record("vamp-mnist", 0, 88.0)]
    board = leaderboard(pd.DataFrame(rows))
    assert dict(zip(board["run"], board["rank"])) == {"vamp-digits": "1", "gaussian-digits": "2", "vamp-mnist": "1", "gaussian-mnist": "2"}
    lines = to_markdown(board).splitlines()
    assert "| dataset |" in next(line for line in lines if line.startswith("| rank"))
    assert any(line.startswith("| 1 | vamp-mnist | mnist |") for line in lines)


def test_rows_closer_than_either_rows_k_fifth_to_k_change_are_tied():
    change = {"name": "is_nll_k_change", "direction": "none", "unit": "nats", "description": "K/5 - K", "headline": True, "digits": 2}

    def row(run, seed, value, k_change):
        return {**record(run, seed, value), "is_nll_k_change": k_change, "columns": [IS_NLL, K, WALL, change]}

    # seed spreads of 0.05 do not overlap (gap 0.3), but b's estimate still fell 0.34 nats from K/5 to K
    rows = [row("a", s, 89.4 + 0.05 * s, 0.26) for s in (0, 1)] + [row("b", s, 89.7 + 0.05 * s, 0.34) for s in (0, 1)]
    rows += [row("c", s, 91.7 + 0.05 * s, 0.28) for s in (0, 1)]
    board = leaderboard(pd.DataFrame(rows))
    assert list(board["rank"]) == ["1=", "1=", "3"]
    assert "K/5 to K" in caption(board)

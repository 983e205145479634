"""Paired gap between two predictions of the same test images (issue 33's ablations): B minus A, with its SE.

    python bench/task_pair.py multilabel|regression ANSWERS A.csv B.csv

A and B are submissions or probability files as ``task_formats.py`` reads them (tags, label probabilities thresholded
at 0.5, or values). Prints B's headline and second score with their SEs and B - A on each, paired per image (F2,
RMSE, MAE: delta method per image; micro-F1: a 200-draw bootstrap), with the functions of ``task_formats.py``.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import task_formats as tf  # noqa: E402


def main(argv: list[str]) -> None:
    kind, answers, base, other = argv[0], Path(argv[1]), Path(argv[2]), Path(argv[3])
    ids, truth = tf.read_answers(answers)
    multilabel = kind == "multilabel"
    a, b = tf.read_prediction(base, ids, multilabel), tf.read_prediction(other, ids, multilabel)
    if multilabel:
        labels = sorted(set().union(*truth))
        matrix = [tf.tag_matrix(x, labels) for x in (truth, a, b)]
        scores = tf.multilabel_scores(matrix[0], matrix[2], matrix[1])
    else:
        scores = tf.regression_scores(np.array(truth), np.array(b), np.array(a))
    print({name: tuple(round(x, 4) for x in stat) for name, stat in scores.items()})


if __name__ == "__main__":
    main(sys.argv[1:])

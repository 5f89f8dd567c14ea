"""Evaluation: VideoRefer-Bench-Q (:mod:`garvideo.eval.videorefer_q` runs it, :mod:`garvideo.eval.scoring`
scores predictions as the official script does) and video object segmentation scores
(:mod:`garvideo.eval.vos`: J and F of tracked masks against ground truth).

The package root is lazy (:mod:`garvideo._lazy`): a name is imported from its submodule on first use, so
``import garvideo.eval.scoring`` loads neither the pipeline nor torch.
"""

from typing import TYPE_CHECKING

from garvideo._lazy import lazy_exports

if TYPE_CHECKING:
    from garvideo.eval.scoring import Scores, score_file, score_records
    from garvideo.eval.vos import SequenceScore, evaluate_sequence, f_measure, jaccard

_EXPORTS = {
    "Scores": "scoring",
    "score_file": "scoring",
    "score_records": "scoring",
    "SequenceScore": "vos",
    "evaluate_sequence": "vos",
    "f_measure": "vos",
    "jaccard": "vos",
}

__all__ = [
    "Scores",
    "SequenceScore",
    "evaluate_sequence",
    "f_measure",
    "jaccard",
    "score_file",
    "score_records",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

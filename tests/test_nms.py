"""NMS and weighted NMS against straightforward loop references on random boxes."""

import numpy as np
import pytest

from agent.processing.nms import MATRIX_LIMIT, nms, weighted_nms
from nms_reference import random_boxes, reference_nms, reference_weighted_nms


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_brute_force(seed, threshold):
    # given overlapping boxes with random scores and three classes
    rng = np.random.RandomState(seed)
    boxes, scores, classes = random_boxes(rng, 80), rng.rand(80), rng.randint(0, 3, 80)
    # when suppressed class-agnostic and class-aware / then exactly the reference's picks
    assert nms(boxes, scores, threshold).tolist() == reference_nms(boxes, scores, threshold)
    assert nms(boxes, scores, threshold, classes, 20).tolist() == reference_nms(
        boxes, scores, threshold, classes, 20)


@pytest.mark.parametrize("count", [MATRIX_LIMIT, MATRIX_LIMIT + 1, 700])
def test_nms_matches_brute_force_on_either_side_of_the_matrix_limit(count):
    # given more candidates than the IoU-matrix path takes / then the same picks all the same
    rng = np.random.RandomState(count)
    boxes, scores, classes = random_boxes(rng, count, extent=600.0), rng.rand(count), rng.randint(0, 4, count)
    assert nms(boxes, scores, 0.45, classes, 100).tolist() == reference_nms(
        boxes, scores, 0.45, classes, 100)


@pytest.mark.parametrize("seed", range(5))
def test_weighted_nms_matches_loop_reference(seed):
    rng = np.random.RandomState(seed)
    boxes, scores = random_boxes(rng, 40, extent=120.0), rng.uniform(0.5, 1.0, 40)
    got_boxes, got_scores = weighted_nms(boxes, scores, 0.3)
    expected = reference_weighted_nms(boxes.tolist(), scores.tolist(), 0.3)
    assert len(got_boxes) == len(expected)
    np.testing.assert_allclose(got_boxes, [b for b, _ in expected], atol=1e-9)
    np.testing.assert_allclose(got_scores, [s for _, s in expected])


def test_weighted_nms_merges_a_cluster_by_score():
    # given two overlapping boxes scored 3:1 / then one box, 3/4 of the way to the better one
    boxes, scores = weighted_nms(np.array([[0, 0, 10, 10], [2, 0, 12, 10]]), np.array([0.75, 0.25]), 0.3)
    np.testing.assert_allclose(boxes, [[0.5, 0, 10.5, 10]])
    assert scores.tolist() == [0.75]

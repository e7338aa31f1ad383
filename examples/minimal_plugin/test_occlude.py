import numpy as np

from cqdkit.degradations import PairMaker
from cqdkit.testing import check_degradation


def test_occlude_keeps_the_degradation_contract():
    check_degradation("occlude")
    check_degradation("occlude:fraction=0.5+lowres:size=8")


def test_occlude_hides_one_gray_square_of_the_asked_size():
    image = np.zeros((40, 40, 3), np.uint8)
    x, z = PairMaker("occlude:fraction=0.25", size=32)(image, seed=1)
    hidden = (z == 128).all(axis=2)
    assert hidden.sum() == 8 * 8 and (z[~hidden] == x[~hidden]).all()

from cqdkit.testing import check_distiller


def test_hint_keeps_the_distiller_contract():
    check_distiller("hint")  # trains, saves and resumes its regressor; absent from the export
    check_distiller("hint", spec="student=-2,teacher=-2")

import rt_physio


def test_version_is_set() -> None:
    assert rt_physio.__version__.count(".") == 2

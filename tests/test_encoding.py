

def test_level_window_ramps_one_level_after_another():
    from nid_nerf.fields.encoding import level_window

    # 8 levels, 2 on from the start: alpha = 2 + 6 * progress; level l weighs clamp(alpha - l, 0, 1)
    assert level_window(8, 0.0, 2).tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert level_window(8, 0.25, 2).tolist() == [1, 1, 1, 0.5, 0, 0, 0, 0]
    assert level_window(8, 1.0, 2).tolist() == [1] * 8
    assert level_window(8, 3.0, 2).tolist() == [1] * 8  # past the end: clamped

"""The soak benchmark's memory samples: summary and picture."""

import cv2


def test_soak_memory_summary_and_plot(tmp_path):
    from clusteringsdf_ros import bench_memory as bench

    assert bench.rss_mb() > 10.0
    samples = [{"t_s": 10.0 * k, "rss_mb": 500.0 + min(k, 3) * 20.0, "key_frames": min(4 * k, 12),
                "iteration": 100 * k} for k in range(8)]
    summary = bench.memory_summary(samples)
    assert (summary["rss_mb_start"], summary["rss_mb_peak"], summary["rss_mb_end"]) == (500.0, 560.0, 560.0)
    assert summary["second_half_peak_growth_mb"] == 0.0 and summary["key_frames_end"] == 12
    samples[-1]["rss_mb"] = 700.0                      # still growing at the end
    assert bench.memory_summary(samples)["second_half_peak_growth_mb"] == 140.0
    assert bench.memory_summary(samples[:3])["second_half_peak_growth_mb"] is None
    path = bench.plot_memory(bench.memory_summary(samples), tmp_path / "memory.png")
    image = cv2.imread(str(path))
    assert image.shape == (360, 720, 3)
    assert ((image[..., 2] > 150) & (image[..., 0] < 90)).sum() > 200     # the red RSS curve

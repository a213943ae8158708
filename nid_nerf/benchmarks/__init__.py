"""Benchmarks and viewer checks: run any nerfstudio method for a fixed budget in one process, time it, score it.

``harness`` holds the one training loop (:class:`~nid_nerf.benchmarks.harness.TrainRun`,
:func:`~nid_nerf.benchmarks.harness.train`) and ``report`` the shared report code; one module per benchmark,
named after what it measures (``speed``, ``quality``, ``fewview``, ``dictionary_sweep``, ``inpainting``,
``sampler_variants``, ``field_cost``, ``mesh_export``, ``mesh_quality``), plus the few-view demo
(``fewview_demo``) and the collections' ``contact_sheet``. ``scripts/*.py`` are thin command-line shims over them.
"""

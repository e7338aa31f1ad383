"""Why CQD works (paper section 3): gradient saliency, tau and the class pairs CQD confuses less.

One concept per module, each usable on its own::

    from cqdkit.explain.saliency import saliency        # needs torch
    from cqdkit.explain.tau import box_fraction
    from cqdkit.explain.confusion import confusion_matrix, top_reductions
    from cqdkit.explain.report import Explanation, write_report   # matplotlib, on first figure

    maps = saliency(model, normalizer, images, labels)  # (B, H, W): per-pixel ||d log p(y|z) / dz||_2
    tau = box_fraction(maps, boxes)                      # share of it inside each (x0, y0, x1, y1) box
    pairs = top_reductions(confusion_matrix(y, b_pred, n), confusion_matrix(y, cqd_pred, n), k=5)

:func:`cqdkit.explain.analysis.explain_run` runs all of them on a run's test set and writes the figures and
a report (what ``cqdkit explain RUN_DIR`` does). Importing this package itself imports nothing heavy.
"""

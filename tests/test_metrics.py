"""The metric registry: one entry per name, families for the names with a varying part."""

from __future__ import annotations

from runspec.run import metrics


def test_names_families_and_their_entries():
    assert metrics.info(metrics.VAL_LOSS).better == metrics.LOWER
    assert metrics.info(metrics.TOKENS_PER_S).better == metrics.HIGHER
    assert metrics.info(metrics.grad_norm("blocks")).group == "debug"
    assert metrics.info("final_benchmarks/test_sliding_bpb").better == metrics.LOWER  # a pass, not a head statistic
    assert metrics.info("final_benchmarks/conviction_auroc_top1").label == "conviction AUROC"
    for name in (metrics.debug_loss("conviction"), metrics.aux_layer_loss(3, 1), metrics.aux_final_loss(2),
                 metrics.named(metrics.FINAL, "test_loss"), metrics.debug("moe_balance")):
        assert metrics.registered(name), name
    assert not metrics.registered("train/typo") and not metrics.registered("elsewhere/loss")


def test_a_name_outside_the_vocabulary_still_shows_and_formats():
    m = metrics.info("train/typo")
    assert (m.label, m.format(0.123456), m.format(None), m.format(float("nan"))) == ("typo", "0.1235", "-", "-")


def test_named_losses_exclude_the_lm_loss():
    assert metrics.is_named_loss("debug/conviction_loss") and not metrics.is_named_loss("debug/ce_loss")
    assert not metrics.is_named_loss(metrics.TRAIN_LOSS)

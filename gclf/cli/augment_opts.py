"""`gclf train` options of the augmentation recipe (:class:`gclf.data.augment.AugmentConfig`).

Each option left out keeps the default recipe's value (:data:`gclf.data.augment.RECIPE`); ``--no-augment``
starts from no augmentation instead, so ``--no-augment --copies 3 --pitch 0.85,1.6`` names a recipe whatever
the default is.
"""
from __future__ import annotations

from dataclasses import replace

import click

from gclf.data.augment import RECIPE, AugmentConfig


class RangeType(click.ParamType):
    """``LO,HI`` (two positive numbers, LO <= HI) or ``off``."""

    name = "LO,HI|off"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple) or value is None:
            return value
        if str(value).lower() in ("off", "none", "0"):
            return "off"
        try:
            lo, hi = (float(v) for v in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not LO,HI (e.g. 0.9,1.4) nor 'off'", param, ctx)
        if lo > hi:
            self.fail(f"{value!r}: LO must not exceed HI", param, ctx)
        return (lo, hi)


RANGE = RangeType()


class ClassRangeType(click.ParamType):
    """``CLASS:LO,HI`` (a class label, two positive numbers, LO <= HI)."""

    name = "CLASS:LO,HI"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        label, sep, rng = str(value).partition(":")
        if not sep or not label:
            self.fail(f"{value!r} is not CLASS:LO,HI (e.g. M:1,1.6)", param, ctx)
        lo_hi = RANGE.convert(rng, param, ctx)
        if lo_hi == "off":
            self.fail(f"{value!r}: give a range, not 'off'", param, ctx)
        return (label, *lo_hi)


CLASS_RANGE = ClassRangeType()
_RANGES = ("pitch", "formant", "speed", "noise_snr")


def augment_options(f):
    """Decorate a command with the augmentation options (they arrive as keyword arguments)."""
    opts = [
        click.option("--no-augment", is_flag=True, help="Start from no augmentation instead of the default recipe "
                          f"({describe(RECIPE)}; --arch raw_conv has none); the options below then add to nothing."),
        click.option("--copies", type=click.IntRange(0, 64), default=None,
                     help="Augmented versions of each training utterance (audio read once per run)."),
        click.option("--p-augmented", type=click.FloatRange(0, 1), default=None,
                     help="Chance that an epoch trains on an augmented version of an utterance."),
        click.option("--with-original/--instead-of-original", default=None,
                     help="An epoch trains on every original utterance and, besides, on the augmented versions "
                          "picked (--p-augmented), instead of on the picked versions in the originals' place."),
        click.option("--pitch", type=RANGE, default=None, help="F0 factor range, formants kept (e.g. 0.9,1.4)."),
        click.option("--pitch-class", type=CLASS_RANGE, multiple=True,
                     help="F0 factor range for one class's utterances, in place of --pitch for them, e.g. "
                          "--pitch-class M:1,1.6 --pitch-class F:0.75,1 (repeatable)."),
        click.option("--formant", type=RANGE, default=None, help="Formant factor range, F0 kept."),
        click.option("--speed", type=RANGE, default=None, help="Speed (resampling) factor range."),
        click.option("--noise-snr", type=RANGE, default=None, help="Additive noise SNR range in dB (e.g. 5,30)."),
        click.option("--noise-dir", type=click.Path(file_okay=False, exists=True), default=None,
                     help="Folder of noise clips for --noise-snr (default: synthetic white/pink/brown noise)."),
        click.option("--reverb", type=click.FloatRange(0, 1), default=None, help="Chance of a synthetic room."),
        click.option("--bandlimit", type=click.FloatRange(0, 1), default=None, help="Chance of a random band-pass."),
        click.option("--time-masks", type=click.IntRange(0, 20), default=None, help="SpecAugment frame masks per window."),
        click.option("--coef-masks", type=click.IntRange(0, 20), default=None,
                     help="SpecAugment coefficient masks per window."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def describe(cfg: AugmentConfig) -> str:
    """The options that differ from no augmentation, as they would be typed."""
    parts = []
    for k, v in vars(cfg).items():
        if v != getattr(AugmentConfig(), k):
            flag = f"--{k.replace('_', '-')}"
            if k == "pitch_class":
                parts.extend(f"{flag} {c}:{lo:g},{hi:g}" for c, lo, hi in v)
            elif isinstance(v, bool):
                parts.append(flag)                  # the only bool (with_original) is off by default
            else:
                parts.append(f"{flag} " + (",".join(f"{x:g}" for x in v) if isinstance(v, tuple) else f"{v}"))
    return " ".join(parts) or "none"


def augment_config(base: AugmentConfig, no_augment: bool = False, **given) -> AugmentConfig:
    """``base`` (or no augmentation) with the options that were given."""
    cfg = AugmentConfig() if no_augment else base
    changes = {}
    for k, v in given.items():
        if v is None or (k == "pitch_class" and not v):   # a repeatable option not given is ()
            continue
        changes[k] = None if (k in _RANGES and v == "off") else v
    out = replace(cfg, **changes)
    if out.copies == 0 and any([out.pitch, out.pitch_class, out.formant, out.speed, out.noise_snr, out.reverb, out.bandlimit]):
        from gclf.errors import GclfError

        raise GclfError("audio augmentation (--pitch, --pitch-class, --formant, --speed, --noise-snr, --reverb, --bandlimit) "
                        "needs --copies N with N > 0")
    return out


AUGMENT_KEYS = ("no_augment", "copies", "p_augmented", "with_original", "pitch", "pitch_class", "formant", "speed",
                "noise_snr", "noise_dir", "reverb", "bandlimit", "time_masks", "coef_masks")

"""The integer MFCC front-end: PCM int16 -> MFCC frames, defined once (config.py), with a numpy integer
reference (intref.py), a float64 mirror (floatref.py) and generated C (c.py)."""
from gclf.frontend.config import FrontendConfig, tables
from gclf.frontend.floatref import float_of_int, mfcc_float
from gclf.frontend.intref import mfcc_int, pcm16

__all__ = ["FrontendConfig", "tables", "mfcc_int", "mfcc_float", "float_of_int", "pcm16"]

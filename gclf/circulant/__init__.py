"""Block-circulant linear layers and the projection of dense weights onto them (layer.py)."""
from gclf.circulant.layer import (BlockCirculantLinear, blocks_respect_gates, circulant_to_dense, compress_model,
                                  convert_linear, project_to_circulant)

__all__ = ["BlockCirculantLinear", "blocks_respect_gates", "circulant_to_dense", "compress_model",
           "convert_linear", "project_to_circulant"]

"""ser_lib: speech emotion recognition with a WAP-Transformer adapter and local attributes.

The library behind the recipes in ``recipes/``: frozen encoders and the feature cache,
the WAP-Transformer adapter, local attributes, statistical attentive pooling, the
stage-1 and stage-2 Brains, metrics and corpus-independent data helpers.
"""

__version__ = "0.1.0"

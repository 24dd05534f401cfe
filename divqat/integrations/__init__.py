"""Bridges to other toolboxes; each submodule imports its toolbox only when it is imported.

- :mod:`divqat.integrations.art`: the Adversarial Robustness Toolbox (``pip install
  divqat[art]``): divqat victims and black boxes as ART classifiers, divqat defenses as ART
  postprocessors, divqat models as ART surrogates.
"""

"""reinstate's integrations under the distribution's own name.

The tool itself lives in ``evalsuite``, ``regressions`` and ``gates``; this package only
holds adapters to other ecosystems, each importing its library on its own:
``reinstate.openfeature`` (``pip install 'reinstate[openfeature]'``).
"""

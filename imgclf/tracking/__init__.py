"""MLflow tracking: a provider of training callbacks that every ``fit`` may take, and never a reason for a run to fail.

- :mod:`~imgclf.tracking.session`: one run's tracking (``tracking_session`` yields the ``fit`` callbacks), the store
  it logs to and its connection checks;
- :mod:`~imgclf.tracking.cv`: a CV's parent run with its folds nested under it;
- :mod:`~imgclf.tracking.urls`: store URLs, their SQLAlchemy form and one-line error messages, credentials masked.
"""

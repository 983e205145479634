"""``train --budget`` and ``cv --budget``: the recipe that plans a fine-tune within a wall-clock budget.

One module a step, each a plain function the recipe calls in turn:

- :mod:`~imgclf.budget.plan`: parsing a budget, the clock, the cost model (seconds per image = a + b·s²) and the
  pure arithmetic that turns time into a size, epochs and models;
- :mod:`~imgclf.budget.prior`: where it starts (the short-run prior on the keys the user left alone, progressive
  resizing, the flip TTA);
- :mod:`~imgclf.budget.measure`: the warm-up that fits the cost model;
- :mod:`~imgclf.budget.feature_probe`, :mod:`~imgclf.budget.resolution`, :mod:`~imgclf.budget.orientation`: the
  probes on frozen features that cap the size and pick the flip group, each only beyond its noise;
- :mod:`~imgclf.budget.final`: the final models, sharing the time left;
- :mod:`~imgclf.budget.estimate`: what the submission is worth, on the images the models held out;
- :mod:`~imgclf.budget.recipe` and :mod:`~imgclf.budget.cv`: the two recipes, which write ``RUN/recipe.json``.

**The one time-safety mechanism is the clock.** Each final model (or CV fold) gets an even share of the time left,
less a fixed reserve for the estimate and the report, as its ``train.time_limit``. After every epoch the training
loop re-plans how many epochs fit that limit at the pace measured so far (the last one possibly partial) and
stretches or shortens the learning-rate schedule to end there, so a wrong warm-up or a machine that slows down
costs epochs, never the budget. The shares the planner leaves unspent (``PLAN_SHARE``, ``TIME_SHARE``) only pick
the size before training starts; nothing else stops a run.
"""

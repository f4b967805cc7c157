"""Fine-tuning neighbourhood models: exact sufficient-statistics updates.

A KNN model has no gradient to follow: its "parameters" are the sparse
sufficient statistics of its similarities (co-counts, dot products, norms,
means). Fine-tuning adds the new events to those statistics — re-rated pairs
replace their old value — and rebuilds the pruned neighbour lists, so the
result equals a refit on old + new data (tested). ``decay`` < 1 down-weights
every earlier event's weight before the new ones are added (a pair of two old
events then scales by ``decay²``, an old–new pair by ``decay``): the only
definition under which an update still equals a weighted refit.

There are no epochs, so no validation slice is held out: every new row is
used, in its original order (ties between equally similar neighbours go to the
earlier event, as in a refit).
"""

from __future__ import annotations

import copy

from rectune.finetune.engine import Job


def finetune_knn(job: Job) -> None:
    """Handler for :class:`UserKNN`, :class:`ItemKNN` and :class:`ImplicitItemKNN`."""
    new = job.fit
    model = copy.deepcopy(job.pretrained)
    kwargs = {"decay": job.config.decay}
    model.update(new, **kwargs)  # type: ignore[attr-defined]
    job.model = model
    job.info.update(method="sufficient-statistics update", decay=job.config.decay,
                    n_events_added=len(new))
    job.say(f"{type(model).__name__}: added {len(new):,} events to the similarity statistics "
            f"(decay {job.config.decay:g})")


def register_handlers() -> None:
    from rectune.finetune.engine import register
    from rectune.models.knn import ImplicitItemKNN, ItemKNN, UserKNN

    for cls in (UserKNN, ItemKNN, ImplicitItemKNN):
        register(cls, finetune_knn, validation=False)

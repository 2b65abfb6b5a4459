"""The store's named read queries for reports, the web GUI and the query API.

Every Mongo query dict of alflow lives in ``alflow/store/``; the modules that
show a campaign (``alflow/report``, ``alflow/monitor``, ``alflow/query``)
ask for what they need by name. :class:`~alflow.store.store.Store` inherits
these methods; they are kept here so that ``store.py`` holds the writes and
the campaign's own records.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["StoreReads"]

_LABELED = ("labeled", "seed")


class StoreReads:
    """Read-only queries over alflow's collections (mixed into ``Store``)."""

    campaigns: Any
    structures: Any
    labels: Any
    iterations: Any
    models: Any

    # ------------------------------------------------------------ campaigns
    def campaign_summary(self, name: str) -> dict[str, Any] | None:
        """The campaign document without its configuration; None if there is none."""
        return self.campaigns.find_one({"name": name}, {"config": 0})

    def has_campaign(self, name: str, *, with_structures: bool = False) -> bool:
        """True if a campaign document (or, ``with_structures``, a structure) names it."""
        if self.campaigns.find_one({"name": name}, {"_id": 1}) is not None:
            return True
        return (
            with_structures and self.structures.find_one({"campaign": name}, {"_id": 1}) is not None
        )

    def known_campaign_names(self) -> set[str]:
        """Campaign names of campaign documents and of structures."""
        names = {str(n) for n in self.campaigns.distinct("name")}
        return names | {str(n) for n in self.structures.distinct("campaign")}

    def campaign_selection_config(self, name: str) -> dict[str, Any]:
        """The stored ``selection`` section of a campaign's configuration ({} if none)."""
        doc = self.campaigns.find_one({"name": name}, {"config.selection": 1}) or {}
        return (doc.get("config") or {}).get("selection") or {}

    def campaign_versions(self, name: str) -> dict[str, Any]:
        """What changes when a campaign's page must be redrawn: status, update times, counts."""
        doc = (
            self.campaigns.find_one(
                {"name": name}, {"updated": 1, "status": 1, "validation.updated": 1}
            )
            or {}
        )
        return {
            "status": doc.get("status"),
            "updated": doc.get("updated"),
            "validation_updated": (doc.get("validation") or {}).get("updated"),
            "iterations": self.count_iterations(name),
            "labels": int(self.labels.count_documents({"campaign": name})),
        }

    def count_failed_models(self, campaign: str, iteration: int | str) -> int:
        """Members of an iteration (or the final fit) whose training failed."""
        return int(
            self.models.count_documents(
                {"campaign": campaign, "iteration": iteration, "status": "failed"}
            )
        )

    # ------------------------------------------------------------ iterations
    def count_iterations(self, campaign: str) -> int:
        """Iteration documents of a campaign."""
        return int(self.iterations.count_documents({"campaign": campaign}))

    def iteration_doc(self, campaign: str, iteration: int) -> dict[str, Any] | None:
        """The iteration document, None before collect wrote it."""
        return self.iterations.find_one({"campaign": campaign, "iteration": iteration})

    def last_iteration(self, campaign: str) -> int | None:
        """The highest iteration with a document, None before the first."""
        doc = self.iterations.find_one(
            {"campaign": campaign}, {"iteration": 1}, sort=[("iteration", -1)]
        )
        return None if doc is None else doc.get("iteration")

    # ------------------------------------------------------------ structures
    @staticmethod
    def _structure_filter(
        campaign: str,
        status: str | Sequence[str] | None,
        iteration: int | str | None,
        before_iteration: int | None,
        has: Sequence[str],
        where: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        flt: dict[str, Any] = {"campaign": campaign}
        if status is not None:
            flt["status"] = status if isinstance(status, str) else {"$in": list(status)}
        if iteration is not None:
            flt["iteration"] = iteration
        if before_iteration is not None:
            flt["iteration"] = {"$lt": before_iteration}
        flt.update({path: {"$exists": True} for path in has})
        flt.update(where or {})
        return flt

    def structures_of(
        self,
        campaign: str,
        *,
        status: str | Sequence[str] | None = None,
        iteration: int | str | None = None,
        before_iteration: int | None = None,
        has: Sequence[str] = (),
        where: Mapping[str, Any] | None = None,
        fields: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """A campaign's structure documents, oldest first, lazily.

        Parameters
        ----------
        campaign
            The campaign.
        status
            One status or any of several.
        iteration, before_iteration
            Exactly this iteration, or every iteration before this one.
        has
            Dotted field paths the document must have (e.g. ``"committee.forces_eV_A"``).
        where
            Further fields that must equal the given values (e.g. ``{"origin.walker": 3}``).
        fields
            Only these fields (and ``_id``); None: the whole document.
        """
        flt = self._structure_filter(campaign, status, iteration, before_iteration, has, where)
        projection = None if fields is None else dict.fromkeys(fields, 1)
        return iter(self.structures.find(flt, projection).sort("_id", 1))

    def count_structures(
        self,
        campaign: str,
        *,
        status: str | Sequence[str] | None = None,
        iteration: int | str | None = None,
        before_iteration: int | None = None,
        has: Sequence[str] = (),
        where: Mapping[str, Any] | None = None,
    ) -> int:
        """How many structures :meth:`structures_of` would return for the same filters."""
        flt = self._structure_filter(campaign, status, iteration, before_iteration, has, where)
        return int(self.structures.count_documents(flt))

    def status_counts(self, campaign: str) -> dict[str, int]:
        """Structures of a campaign per status."""
        return {
            status: int(self.structures.count_documents({"campaign": campaign, "status": status}))
            for status in self.structures.distinct("status", {"campaign": campaign})
        }

    def label_outcome_counts(self, campaign: str) -> dict[int, dict[str, int]]:
        """Per iteration: structures ``labeled`` (seeds included), ``failed`` and ``rejected``."""
        out: dict[int, dict[str, int]] = {}
        for iteration in sorted(self.structures.distinct("iteration", {"campaign": campaign})):
            query = {"campaign": campaign, "iteration": iteration}
            out[int(iteration)] = {
                "labeled": int(
                    self.structures.count_documents({**query, "status": {"$in": list(_LABELED)}})
                ),
                "failed": int(self.structures.count_documents({**query, "status": "failed"})),
                "rejected": int(self.structures.count_documents({**query, "status": "rejected"})),
            }
        return out

    def is_selected(self, campaign: str, key: str) -> bool:
        """True if the structure ``key`` of ``campaign`` is queued for a label (``selected``)."""
        doc = self.structures.find_one(
            {"campaign": campaign, "key": key, "status": "selected"}, {"_id": 1}
        )
        return doc is not None

    def walker_status_counts(
        self, campaign: str, iteration: int, statuses: Sequence[str]
    ) -> dict[str, int]:
        """Walker frames of an iteration per status (every status in ``statuses``, 0 if none)."""
        return {
            status: self.count_structures(
                campaign, status=status, iteration=iteration, where={"origin.kind": "walker"}
            )
            for status in statuses
        }

    def labeled_frames_of_iteration(
        self, campaign: str, iteration: int
    ) -> Iterator[dict[str, Any]]:
        """Frames of an iteration labeled this iteration that carry the committee's prediction."""
        return self.structures_of(
            campaign, status="labeled", iteration=iteration, has=("committee",)
        )

    def count_audit(self, campaign: str, iteration: int) -> int:
        """Audit frames (accurate frames labeled to check the window) of an iteration."""
        return self.count_structures(campaign, iteration=iteration, where={"audit": True})

    def walker_uncertainties(self, campaign: str) -> Iterator[tuple[int, float]]:
        """(iteration, max force deviation in eV/Å) of every frame that has one."""
        for doc in self.structures.find(
            {"campaign": campaign, "uncertainty.max_force_dev_eV_A": {"$exists": True}},
            {"iteration": 1, "uncertainty.max_force_dev_eV_A": 1},
        ):
            value = doc["uncertainty"]["max_force_dev_eV_A"]
            if value is not None:
                yield int(doc["iteration"]), float(value)

    def labeled_with_committee(self, campaign: str) -> Iterator[dict[str, Any]]:
        """Labeled frames that carry the committee's forces, in insertion order.

        Each: ``key``, ``iteration``, ``label_id``, ``committee.forces_eV_A``.
        """
        yield from self.structures.find(
            {"campaign": campaign, "status": "labeled", "committee.forces_eV_A": {"$exists": True}},
            {"key": 1, "iteration": 1, "label_id": 1, "committee.forces_eV_A": 1},
        ).sort("_id", 1)

    def structures_by_key_prefix(
        self, prefix: str, campaign: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Structures whose key starts with ``prefix`` (a full key: that one), at most ``limit``.

        A prefix is a key range, an index scan (a regex is a full scan on some servers).
        """
        flt: dict[str, Any] = (
            {"key": prefix} if len(prefix) >= 24 else {"key": {"$gte": prefix, "$lt": prefix + "g"}}
        )
        if campaign is not None:
            flt["campaign"] = campaign
        return list(self.structures.find(flt).limit(limit))

    # ------------------------------------------------------------ labels
    def ok_label_for(self, structure: dict[str, Any]) -> dict[str, Any] | None:
        """The successful label a structure points to, else any successful label of its key."""
        if structure.get("label_id") is not None:
            label = self.labels.find_one({"_id": structure["label_id"], "ok": True})
            if label is not None:
                return label
        return self.labels.find_one({"structure_key": structure["key"], "ok": True})

    def labels_of(self, structure_key: str) -> list[dict[str, Any]]:
        """Every label (any parameters, failed ones too) of a structure key."""
        return list(self.labels.find({"structure_key": structure_key}))

    def label_costs(self, campaign: str) -> Iterator[dict[str, Any]]:
        """The campaign's labels with ``iteration``, ``wall_s``, ``cores`` and ``attempts``."""
        yield from self.labels.find(
            {"campaign": campaign}, {"iteration": 1, "wall_s": 1, "cores": 1, "attempts": 1}
        )

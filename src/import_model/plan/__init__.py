"""Phase 1 planning: model anatomy, donor ranking, delta list and the default plan.

- :mod:`.modeling` reads HF modeling code statically (never imports it);
- :mod:`.behaviour` detects what that code does (pattern tables over the AST);
- :mod:`.anatomy` assembles rows from config, checkpoint keys and modeling code;
- :mod:`.donors` describes MAX's donors by their HF twins, compares, ranks;
- :mod:`.defaults` states the four-axis default plan;
- :mod:`.planner` ties them together (:func:`make_plan`).
"""

from import_model.plan.anatomy import Anatomy, Row, build_anatomy
from import_model.plan.donors import DELTA_RULES, Candidate, Delta, DeltaRule
from import_model.plan.planner import Plan, make_plan

__all__ = ["DELTA_RULES", "Anatomy", "Candidate", "Delta", "DeltaRule", "Plan", "Row", "build_anatomy", "make_plan"]

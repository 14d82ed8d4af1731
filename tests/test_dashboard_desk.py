"""The dashboard's support desk in headless Chromium against a real server: two agents see
the unassigned queue in its order, take, transfer, set a status, unassign and close, each
page following the other's changes live; a refused transfer is shown; and the server's state
and audit trail match the clicks."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.support.client import Api
from tests.support.node import run_node
from tests.test_dashboard import chromium  # noqa: F401 (the fixture)
from tests.test_desk import call, done, patch


@pytest.mark.timeout(1200)  # a first run may install chromium (bounded in the fixture)
async def test_desk_in_the_browser(sqlite_api: Api, chromium: str) -> None:  # noqa: F811
    api = sqlite_api
    agent1 = await api.register(role="agent", first_name="Alice", last_name="Agent")
    agent2 = await api.register(role="agent", first_name="Bob", last_name="Agent")
    customer = await api.register()
    made = []
    # High priorities: the queue of the shared server may hold other tests' conversations.
    for priority in (8, 9, 8):
        conversation = await api.conversation(customer, title=f"Needs help P{priority}")
        await done(await patch(api, agent1, conversation["id"], {"priority": priority}))
        made.append(conversation["id"])
    older, urgent, newer = made
    expected = [urgent, older, newer]

    config = {
        "chromium": chromium,
        "agent1": {"email": agent1.email, "password": agent1.password, "id": agent1.id},
        "agent2": {"email": agent2.email, "password": agent2.password, "id": agent2.id},
        "queued": expected,
        "user_id": customer.id,
    }
    result = await asyncio.to_thread(run_node, "dashboard_desk.js", api.base_url,
                                     json.dumps(config), timeout=120)

    assert result["problems"] == []
    assert result["queueOrder"] == expected
    assert result["priorityShown"] == "P9"
    assert result["queueAfterTake"] == [older, newer]
    assert result["assignee1"] == "Assigned to you"
    assert result["assignee2"] == f"Assigned to agent #{agent1.id}"
    assert result["transferred2"] == "Assigned to you"
    assert result["transferred1"] == f"Assigned to agent #{agent2.id}"
    assert result["status1"] == "support_active"
    assert result["chatStatus1"] == "support · support_active"
    assert result["unassigned1"] == "Unassigned"
    assert result["queueAfterUnassign"] == expected
    assert "agent" in result["refusal"] and result["assigneeAfterRefusal"] == ""
    assert result["closedStatus2"] == "closed"

    path = f"/api/v1/chat/sessions/{urgent}"
    final = await done(await call(api, agent1, "GET", path))
    assert final["status"] == "closed" and final["assigned_agent_id"] is None
    trail = await done(await call(api, agent1, "GET", f"{path}/audit"))
    assert [(e["actor_id"], e["action"], e["from"], e["to"]) for e in trail] == [
        (agent1.id, "priority", "0", "9"),
        (agent1.id, "assigned", None, str(agent1.id)),
        (agent1.id, "transferred", str(agent1.id), str(agent2.id)),
        (agent2.id, "status", "active", "support_active"),
        (agent2.id, "unassigned", str(agent2.id), None),
        (agent1.id, "status", "support_active", "closed"),
    ]

"""Task and Worker: immutable values, validated once at construction."""

from __future__ import annotations

import inspect

import attrs
import pytest

from taskdist import (
    Assignment,
    DeadlineError,
    InvalidArgumentError,
    InvalidTypeError,
    Priority,
    SubmitResult,
    Task,
    TaskdistError,
    TaskState,
    Worker,
)


def test_task_defaults_and_fields() -> None:
    task = Task("t1")
    assert task.priority == Priority.NORMAL
    assert task.deadline is None and task.ttl is None and task.max_attempts is None
    assert task.requires == frozenset() and dict(task.resources) == {}
    assert task.cost == 1.0
    full = Task(
        "t2",
        priority=Priority.HIGH,
        deadline=12,
        tenant="acme",
        key="user-7",
        requires={"research"},
        resources={"api_calls": 1},
        cost=2.5,
        ttl=60,
        max_attempts=3,
        group="summarise",
        zone="eu",
        payload={"prompt": "hi"},
    )
    assert full.deadline == 12.0 and isinstance(full.deadline, float)
    assert full.requires == frozenset({"research"})
    assert dict(full.resources) == {"api_calls": 1.0}
    assert full.ttl == 60.0 and full.payload == {"prompt": "hi"}


def test_task_is_immutable_and_hashable_by_id_even_with_a_dict_payload() -> None:
    task = Task("t", payload={"a": 1}, resources={"slots": 1})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        task.priority = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        task.resources["slots"] = 2  # type: ignore[index]
    assert hash(task) == hash("t")
    assert task == Task("t", payload={"a": 1}, resources={"slots": 1})
    assert task != Task("t", payload={"a": 2}, resources={"slots": 1})
    assert {task: 1}[Task("t", payload={"a": 1}, resources={"slots": 1})] == 1


def test_any_int_the_queues_order_exactly_is_a_priority() -> None:
    assert Task("t", priority=-3).priority == -3
    assert Task("t", priority=100).priority == 100
    for edge in (2**53, -(2**53)):
        assert Task("t", priority=edge).priority == edge
        assert float(edge) == edge  # an aging key keeps it exactly
        with pytest.raises(InvalidArgumentError, match=r"Task\.priority"):
            Task("t", priority=edge + (1 if edge > 0 else -1))


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"id": ""}, InvalidArgumentError, "Task.id"),
        ({"id": None}, InvalidArgumentError, "Task.id"),
        ({"id": ["unhashable"]}, InvalidTypeError, "Task.id"),
        ({"priority": 1.5}, InvalidTypeError, "Task.priority"),
        ({"priority": True}, InvalidTypeError, "Task.priority"),
        ({"priority": "high"}, InvalidTypeError, "Task.priority"),
        ({"deadline": float("nan")}, DeadlineError, "Task.deadline"),
        ({"deadline": float("inf")}, DeadlineError, "Task.deadline"),
        ({"tenant": {}}, InvalidTypeError, "Task.tenant"),
        ({"key": []}, InvalidTypeError, "Task.key"),
        ({"group": set()}, InvalidTypeError, "Task.group"),
        ({"requires": "research"}, InvalidTypeError, "Task.requires"),
        ({"requires": [1]}, InvalidTypeError, "Task.requires"),
        ({"requires": 5}, InvalidTypeError, "Task.requires"),
        ({"resources": [("slots", 1)]}, InvalidTypeError, "Task.resources"),
        ({"resources": {"slots": -1}}, InvalidArgumentError, "Task.resources"),
        ({"resources": {"slots": float("nan")}}, InvalidArgumentError, "Task.resources"),
        ({"resources": {"": 1}}, InvalidArgumentError, "Task.resources"),
        ({"resources": {3: 1}}, InvalidTypeError, "Task.resources"),
        ({"cost": -0.5}, InvalidArgumentError, "Task.cost"),
        ({"cost": float("nan")}, InvalidArgumentError, "Task.cost"),
        ({"cost": float("inf")}, InvalidArgumentError, "Task.cost"),
        ({"cost": "1"}, InvalidTypeError, "Task.cost"),
        ({"ttl": 0}, InvalidArgumentError, "Task.ttl"),
        ({"ttl": -1}, InvalidArgumentError, "Task.ttl"),
        ({"ttl": float("inf")}, InvalidArgumentError, "Task.ttl"),
        ({"max_attempts": 0}, InvalidArgumentError, "Task.max_attempts"),
        ({"max_attempts": 2.0}, InvalidTypeError, "Task.max_attempts"),
        ({"zone": 3}, InvalidTypeError, "Task.zone"),
    ],
)
def test_bad_task_fields_are_refused_with_a_message_naming_the_field(
    fields: dict[str, object], error: type[TaskdistError], message: str
) -> None:
    arguments: dict[str, object] = {"id": "t"} | fields
    with pytest.raises(error, match=message.replace(".", r"\.")):
        Task(**arguments)  # type: ignore[arg-type]


def test_task_errors_are_also_the_builtin_errors() -> None:
    with pytest.raises(ValueError):
        Task("t", cost=-1)
    with pytest.raises(TypeError):
        Task(["unhashable"])


def test_worker_capacity_is_a_read_only_resource_mapping() -> None:
    assert dict(Worker("w", capacity=10).capacity) == {"slots": 10.0}
    assert Worker("w", capacity=10).slots == 10.0
    mapping = Worker("w", capacity={"slots": 2, "gpu": 1}).capacity
    assert dict(mapping) == {"slots": 2.0, "gpu": 1.0}
    assert Worker("w", capacity={"gpu": 1}).slots == 0.0
    worker = Worker("w1", capacity=10, weight=2, skills={"research"}, zone="eu", cost=0.02)
    assert worker.weight == 2.0 and worker.skills == frozenset({"research"})
    assert hash(worker) == hash("w1")


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"id": ""}, InvalidArgumentError, "Worker.id"),
        ({"id": {}}, InvalidTypeError, "Worker.id"),
        ({"capacity": -1}, InvalidArgumentError, "Worker.capacity"),
        ({"capacity": float("nan")}, InvalidArgumentError, "Worker.capacity"),
        ({"capacity": {}}, InvalidArgumentError, "Worker.capacity"),
        ({"capacity": {"slots": -2}}, InvalidArgumentError, "Worker.capacity"),
        ({"weight": 0}, InvalidArgumentError, "Worker.weight"),
        ({"weight": -1}, InvalidArgumentError, "Worker.weight"),
        ({"weight": float("nan")}, InvalidArgumentError, "Worker.weight"),
        ({"skills": "research"}, InvalidTypeError, "Worker.skills"),
        ({"zone": 1}, InvalidTypeError, "Worker.zone"),
        ({"cost": -0.01}, InvalidArgumentError, "Worker.cost"),
    ],
)
def test_bad_worker_fields_are_refused_with_a_message_naming_the_field(
    fields: dict[str, object], error: type[TaskdistError], message: str
) -> None:
    arguments: dict[str, object] = {"id": "w"} | fields
    with pytest.raises(error, match=message.replace(".", r"\.")):
        Worker(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [Task, Assignment, SubmitResult])
def test_a_written_out_init_takes_every_field_in_order_with_its_default(cls: type) -> None:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    fields = attrs.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    for param, field in zip(params, fields, strict=True):
        default = inspect.Parameter.empty if field.default is attrs.NOTHING else field.default
        assert param.default == default, field.name
        assert param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD


def test_a_written_out_init_sets_every_field_to_what_it_was_given() -> None:
    values = {
        "id": "t",
        "priority": -3,
        "deadline": 5.5,
        "tenant": ("acme", 1),
        "key": 7,
        "requires": frozenset({"gpu"}),
        "resources": {"gpu": 2.0},
        "cost": 0.25,
        "ttl": 9.0,
        "max_attempts": 4,
        "group": "g",
        "zone": "eu",
        "payload": object(),
        "preemptible": False,
        "gang": "crew",
        "gang_size": 2,
    }
    assert [f.name for f in attrs.fields(Task)] == list(values)
    task = Task(*values.values())  # positionally, in field order
    assert {name: getattr(task, name) for name in values} == values
    assert attrs.evolve(task) == task and attrs.evolve(task, cost=1.0).cost == 1.0
    assignment = Assignment(task, "w", 2, 1.5, 31.5, 8, 13)
    assert attrs.astuple(assignment, recurse=False) == (task, "w", 2, 1.5, 31.5, 8, 13)
    result = SubmitResult("t", False, TaskState.LEASED)
    assert attrs.astuple(result) == ("t", False, TaskState.LEASED) and not result

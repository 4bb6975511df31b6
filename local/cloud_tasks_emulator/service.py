"""The gRPC face: the methods of google.cloud.tasks.v2.CloudTasks,
(de)serialized by the official proto-plus types, answered by the store.
Methods not listed answer UNIMPLEMENTED, as gRPC does for unknown ones."""

from typing import Any, Callable

import grpc
import proto
from google.cloud import tasks_v2
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from local.cloud_tasks_emulator.errors import EmulatorError
from local.cloud_tasks_emulator.store import Store

SERVICE = "google.cloud.tasks.v2.CloudTasks"


class CloudTasksService:
    """One method per RPC, named as the RPC, taking and returning the protobuf
    messages behind the proto-plus types (see model)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def CreateQueue(self, request: Message) -> Message:
        return self._store.create_queue(request.parent, request.queue)

    def GetQueue(self, request: Message) -> Message:
        return self._store.get_queue(request.name)

    def ListQueues(self, request: Message) -> Message:
        queues, next_page_token = self._store.list_queues(request.parent, request.filter, request.page_size,
                                                          request.page_token)
        return tasks_v2.ListQueuesResponse.pb()(queues=queues, next_page_token=next_page_token)

    def DeleteQueue(self, request: Message) -> Message:
        self._store.delete_queue(request.name)
        return empty_pb2.Empty()

    def PurgeQueue(self, request: Message) -> Message:
        return self._store.purge_queue(request.name)

    def CreateTask(self, request: Message) -> Message:
        return self._store.create_task(request.parent, request.task, request.response_view)

    def GetTask(self, request: Message) -> Message:
        return self._store.get_task(request.name, request.response_view)

    def ListTasks(self, request: Message) -> Message:
        tasks, next_page_token = self._store.list_tasks(request.parent, request.response_view, request.page_size,
                                                        request.page_token)
        return tasks_v2.ListTasksResponse.pb()(tasks=tasks, next_page_token=next_page_token)

    def DeleteTask(self, request: Message) -> Message:
        self._store.delete_task(request.name)
        return empty_pb2.Empty()


#: RPC name: (request type, response type).
METHODS: dict[str, tuple[type[proto.Message], type[proto.Message] | None]] = {
    "CreateQueue": (tasks_v2.CreateQueueRequest, tasks_v2.Queue),
    "GetQueue": (tasks_v2.GetQueueRequest, tasks_v2.Queue),
    "ListQueues": (tasks_v2.ListQueuesRequest, tasks_v2.ListQueuesResponse),
    "DeleteQueue": (tasks_v2.DeleteQueueRequest, None),  # google.protobuf.Empty
    "PurgeQueue": (tasks_v2.PurgeQueueRequest, tasks_v2.Queue),
    "CreateTask": (tasks_v2.CreateTaskRequest, tasks_v2.Task),
    "GetTask": (tasks_v2.GetTaskRequest, tasks_v2.Task),
    "ListTasks": (tasks_v2.ListTasksRequest, tasks_v2.ListTasksResponse),
    "DeleteTask": (tasks_v2.DeleteTaskRequest, None),
}


def generic_handler(service: CloudTasksService) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(SERVICE, {
        name: grpc.unary_unary_rpc_method_handler(
            _answering(getattr(service, name), request_type, response_type),
            request_deserializer=request_type.deserialize,
            response_serializer=response_type.serialize if response_type else empty_pb2.Empty.SerializeToString,
        )
        for name, (request_type, response_type) in METHODS.items()
    })


def _answering(method: Callable[[Message], Message], request_type: type[proto.Message],
               response_type: type[proto.Message] | None) -> Callable[[Any, grpc.ServicerContext], Any]:
    """Unwraps the request and wraps the answer (neither copies), and turns an
    EmulatorError into the status it names."""
    def handle(request: proto.Message, context: grpc.ServicerContext) -> Any:
        try:
            answer = method(request_type.pb(request))
        except EmulatorError as error:
            context.abort(error.code, str(error))
        return response_type.wrap(answer) if response_type else answer
    return handle

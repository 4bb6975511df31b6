"""Errors that answer a Cloud Tasks RPC with a status code other than OK.

The messages are those production sends for the same mistake, so that a
caller's error handling is exercised by the same text."""

import grpc


class EmulatorError(Exception):
    """An RPC fails with `code`; the message is the status details."""

    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(EmulatorError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(EmulatorError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(EmulatorError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(EmulatorError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unimplemented(EmulatorError):
    code = grpc.StatusCode.UNIMPLEMENTED

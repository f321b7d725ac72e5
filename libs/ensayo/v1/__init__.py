"""Generated protobuf and gRPC stubs for ensayo.v1: never edit by hand."""

from ensayo.v1 import analysis_service_pb2 as analysis_service_pb2
from ensayo.v1 import assignment_service_pb2 as assignment_service_pb2
from ensayo.v1 import catalog_service_pb2 as catalog_service_pb2
from ensayo.v1 import common_pb2 as common_pb2
from ensayo.v1 import decisioning_service_pb2 as decisioning_service_pb2
from ensayo.v1 import definitions_pb2 as definitions_pb2
from ensayo.v1 import events_service_pb2 as events_service_pb2
from ensayo.v1 import analysis_service_pb2_grpc as analysis_service_pb2_grpc
from ensayo.v1 import assignment_service_pb2_grpc as assignment_service_pb2_grpc
from ensayo.v1 import catalog_service_pb2_grpc as catalog_service_pb2_grpc
from ensayo.v1 import decisioning_service_pb2_grpc as decisioning_service_pb2_grpc
from ensayo.v1 import events_service_pb2_grpc as events_service_pb2_grpc

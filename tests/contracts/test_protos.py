"""The generated protobuf code matches protos/ and the protos follow the style guide."""

import filecmp
from pathlib import Path

from google.protobuf import descriptor_pb2

from deploy.dev import protogen
from v2mom.v1 import goals_pb2


def test_generated_code_is_not_stale(tmp_path):
    protogen.generate(out_dir=tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2*.py*"))
    assert fresh, "protoc generated nothing"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, protogen.PROTO_ROOT / p, shallow=False)]
    assert not stale, f"generated code is stale, run `make protos`: {stale}"


def test_every_proto_is_in_package_v2mom_v1():
    for path in protogen.proto_files():
        assert 'package v2mom.v1;' in path.read_text(), path


def test_rpcs_are_camel_case_and_lists_are_paged():
    service = goals_pb2.DESCRIPTOR.services_by_name["GoalService"]
    for method in service.methods:
        assert method.name[0].isupper() and "_" not in method.name, method.name
        if method.name.startswith("List") and method.name != "ListCycles":
            fields = method.input_type.fields_by_name
            assert "page_size" in fields and "page_token" in fields, method.name
            assert "next_page_token" in method.output_type.fields_by_name, method.name


def test_update_uses_field_mask_and_times_are_timestamps():
    update = goals_pb2.UpdateV2MOMRequest.DESCRIPTOR.fields_by_name["update_mask"]
    assert update.message_type.full_name == "google.protobuf.FieldMask"
    for field in goals_pb2.V2MOM.DESCRIPTOR.fields:
        if field.name.endswith("_time"):
            assert field.message_type.full_name == "google.protobuf.Timestamp", field.name


def test_enums_have_unspecified_zero_values():
    proto = descriptor_pb2.FileDescriptorProto()
    goals_pb2.DESCRIPTOR.CopyToProto(proto)
    for enum in proto.enum_type:
        assert enum.value[0].number == 0 and enum.value[0].name.endswith("_UNSPECIFIED"), enum.name

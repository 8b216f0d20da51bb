"""The vendor reference's own example payloads (seed-ims-api-reference.zh.txt),
reassembled by hand into valid JSON.

The reference splits several examples across blocks and drops commas; the
field sets and values below are the vendor's, only the JSON syntax is
repaired.  Each constant is JSON text; use :func:`load` to get a fresh dict.
"""

from __future__ import annotations

import json
from typing import Any

# 1.3.7 GET /images?current=1&size=1 (two blocks joined; commas restored)
LIST_IMAGES = """
{
    "requestId": "97b154b6-d808-4288-911d-a34e1af52a97",
    "code": "Success",
    "message": "调用成功",
    "data": {
        "size": 1,
        "current": 1,
        "total": 8,
        "list": [
            {
                "createdAt": "2023-05-24T05:46:14+08:00",
                "updatedAt": "2023-05-24T05:46:18+08:00",
                "id": 12,
                "imageId": "img-kvvfk28fcjc0mt",
                "imageType": "os_image",
                "name": "test",
                "size": 27205947,
                "status": "active",
                "diskFormat": "qcow2",
                "checksum": "29a9d18dc5e0aa0f14707cffda13fa92",
                "minDisk": 5,
                "minRam": 512,
                "cpuArch": "x86",
                "osType": "linux",
                "platform": "cclinux",
                "progress": "100",
                "usage": "ecs",
                "instructions": "32-bits",
                "uploadId": "",
                "imageTags": null,
                "region": "ecs49",
                "visibility": "public",
                "bootMode": "UEFI",
                "osVersion": "v2"
            }
        ]
    }
}
"""

# 1.4.7 GET /images/img-kvvfk28fcjc0mt (two blocks joined)
GET_IMAGE = """
{
  "requestId": "1f8a8f8a-a6e2-415e-adfa-917c92cb41d1",
  "code": "Success",
  "message": "调用成功",
  "data": {
    "createdAt": "2023-05-24T05:46:14+08:00",
    "updatedAt": "2023-05-24T05:46:18+08:00",
    "id": 12,
    "imageId": "img-kvvfk28fcjc0mt",
    "imageType": "os_image",
    "name": "test",
    "size": 27205947,
    "status": "active",
    "diskFormat": "qcow2",
    "checksum": "29a9d18dc5e0aa0f14707cffda13fa92",
    "minDisk": 5,
    "minRam": 512,
    "cpuArch": "x86",
    "osType": "linux",
    "platform": "cclinux",
    "progress": "100",
    "usage": "ecs",
    "instructions": "32-bits",
    "uploadId": "",
    "imageTags": [],
    "region": "ecs49",
    "visibility": "public",
    "bootMode": "UEFI"
  }
}
"""

# 1.5.7 PUT /private-images/img-a62z9rb9k8tcwy
UPDATE_REQUEST = """
{
    "bootMode": "UEFI",
    "cpuArch": "arm",
    "diskFormat": "qcow2",
    "instruction": "64-bits",
    "minDisk": 20,
    "minRam": 1024,
    "name": "test",
    "osType": "linux",
    "osVersion": "kylin-v10-sp3",
    "platform": "kylin"
}
"""
UPDATE_RESPONSE = """
{
    "requestId": "93c18e11-20b8-45bf-8dcc-744e3fd42a7c",
    "code": "Success",
    "message": "调用成功",
    "data": null
}
"""

# 1.6.8 POST /private-images (flat body)
CREATE_REQUEST = """
{
    "diskFormat": "qcow2",
    "minDisk": 10,
    "minRam": 512,
    "name": "centos8.2",
    "imageType": "os_image",
    "instruction": "64-bits",
    "cpuArch": "x86",
    "osType": "linux",
    "platform": "CentOS",
    "visibility": "private",
    "usage": "ecs",
    "departmentId": "7074631167051202560",
    "resourceGroupId": "",
    "tenantId": "7074631167042813952"
}
"""
CREATE_RESPONSE = """
{
    "code": "Success",
    "data": {
        "owner": "7074631167042813952",
        "instructions": "64-bits",
        "imageId": "img-ja541mkm4kxt67",
        "uploadId": "",
        "visibility": "private",
        "usage": "ecs",
        "departmentId": "7074631167051202560",
        "cpuArch": "x86",
        "minDisk": 10,
        "platform": "CentOS",
        "createdAt": "2023-06-15T06:02:03.756Z",
        "osVersion": "",
        "sourceType": "",
        "minRam": 512,
        "name": "centos8.2",
        "osType": "linux",
        "progress": "0%",
        "resourceGroupId": "",
        "id": 5,
        "diskFormat": "qcow2",
        "imageTags": [
        ],
        "imageType": "os_image",
        "updatedAt": "2023-06-15T06:02:03.756Z",
        "status": "queued",
        "bootMode": "UEFI"
    },
    "requestId": "9c0f702e-78c0-432a-9658-e401e12b3548",
    "message": "调用成功"
}
"""

# 1.7.7 POST /private-images/img-kvvfk28fcjc0mt/upload-prepare (two blocks joined)
UPLOAD_PREPARE_REQUEST = """
{
    "size": 104234
}
"""
UPLOAD_PREPARE_RESPONSE = """
{
    "requestId": "342ac6aa-d4c3-4d2e-a4e0-8ede367e359e",
    "code": "Success",
    "message": "调用成功",
    "data": {
        "image_url": "",
        "accessKey": "E8iGSz1FLwTsaIw9MAEh",
        "secretKey": "R3rvxgFc1x9WkynfO4B8bYw6I78uYKtGgvdFanMk",
        "token": "",
        "bucket": "iaas-image-bc9ce42d2a804f718d3022797a5cc13a",
        "file": "img-xs6oaf7h9kvxr",
        "domain": "https://10.253.101.4:8009"
    }
}
"""

# 1.9.7 POST /private-images/img-kvvfk28fcjc0mt/upload-done (no "data" at all)
UPLOAD_DONE_REQUEST = """
{
    "result": "success",
    "uploadId": "test"
}
"""
UPLOAD_DONE_RESPONSE = """
{
    "requestId": "342ac6aa-d4c3-4d2e-a4e0-8ede367e359e",
    "code": "Success",
    "message": "调用成功"
}
"""

# 1.10.7 GET /private-images?requestInfo=region77&filter=name:lk:1%7CimageId:eq:1%7C&...
LIST_PRIVATE_IMAGES = """
{
    "requestId": "97b154b6-d808-4288-911d-a34e1af52a97",
    "code": "Success",
    "message": "调用成功",
    "data": {
        "size": 1,
        "current": 1,
        "total": 8,
        "list": [
            {
                "createdAt": "2023-05-24T05:46:14+08:00",
                "updatedAt": "2023-05-24T05:46:18+08:00",
                "id": 12,
                "imageId": "img-kvvfk28fcjc0mt",
                "imageType": "os_image",
                "name": "test",
                "size": 27205947,
                "status": "active",
                "diskFormat": "qcow2",
                "checksum": "29a9d18dc5e0aa0f14707cffda13fa92",
                "minDisk": 5,
                "minRam": 512,
                "cpuArch": "x86",
                "osType": "linux",
                "platform": "cclinux",
                "progress": "100",
                "usage": "ecs",
                "instructions": "32-bits",
                "uploadId": "",
                "imageTags": null,
                "region": "ecs49",
                "visibility": "public",
                "bootMode": "UEFI",
                "osVersion": "v2",
                "owner": "7074927169066926081",
                "tenantName": "test"
            }
        ]
    }
}
"""

# 1.12.7 DELETE /private-images/{id} (no "data")
DELETE_RESPONSE = """
{
    "requestId": "1f8a8f8a-a6e2-415e-adfa-917c92cb41d1",
    "code": "Success",
    "message": "调用成功"
}
"""

# 1.13.7 / 1.15.7 POST .../share?requestInfo=region0 and .../unshare
SHARE_REQUEST = """
{
  "shares": {
    "user_ids": [
      "7085524801413873664"
    ]
  }
}
"""
SHARE_RESPONSE = """
{
  "requestId": "c06f9adf-feb3-4780-bc4c-23580e3768d4",
  "code": "Success",
  "message": "调用成功",
  "data": null
}
"""

# 1.14.7 GET /private-images/img-2fpe4gppddvq8c/share?requestInfo=region0&current=1&size=10
LIST_IMAGE_SHARES = """
{
  "requestId": "320d8f61-45ef-4356-8678-3bd69f87759a",
  "code": "Success",
  "message": "调用成功",
  "data": {
    "size": 10,
    "current": 1,
    "total": 1,
    "list": [
      {
        "createdAt": "2023-07-14T07:47:08.853Z",
        "updatedAt": "2023-07-14T07:47:08.853Z",
        "id": 1,
        "shareId": "img-share-mabwezvcbsap5apvpho",
        "imageId": "img-2fpe4gppddvq8c",
        "userId": "7085524801413873664",
        "image": null,
        "userName": "lptest"
      }
    ]
  }
}
"""

# 1.16.7 GET /shared-images?requestInfo=region0&orderBy=createdAt:desc&current=1&size=10
# (two blocks joined: the image object continues in the second block)
LIST_SHARED_IMAGES = """
{
  "requestId": "79cc9351-ccaa-416e-84e2-5a3e6e01b1ab",
  "code": "Success",
  "message": "调用成功",
  "data": {
    "size": 10,
    "current": 1,
    "total": 1,
    "list": [
      {
        "createdAt": "2023-07-14T08:06:23.135Z",
        "updatedAt": "2023-07-14T08:06:23.135Z",
        "id": 2,
        "shareId": "img-share-60syal9krz8c0lnf6n5c",
        "imageId": "img-2fpe4gppddvq8c",
        "userId": "7085524801413873664",
        "image": {
          "createdAt": "2023-07-14T07:43:56Z",
          "updatedAt": "2023-07-14T07:44:03Z",
          "id": 17,
          "imageId": "img-2fpe4gppddvq8c",
          "imageType": "os_image",
          "name": "test",
          "size": 27205947,
          "status": "active",
          "diskFormat": "qcow2",
          "checksum": "29a9d18dc5e0aa0f14707cffda13fa92",
          "path": "/var/lib/libvirt/images/test.qcow2",
          "owner": "7085523589641699328",
          "minDisk": 5,
          "minRam": 512,
          "cpuArch": "x86",
          "osType": "linux",
          "platform": "CCLinux",
          "progress": "100",
          "usage": "ecs",
          "instructions": "32-bits",
          "uploadId": "",
          "imageTags": null,
          "visibility": "private",
          "departmentId": "7085523589700419584",
          "resourceGroupId": "",
          "osVersion": "",
          "position": "minio",
          "sourceType": "internal"
        },
        "userName": "lptest"
      }
    ]
  }
}
"""

# 1.17.7 DELETE /shared-images/img-share-60sya19krz8c0lnf6n5c?requestInfo=region0
DELETE_SHARED_RESPONSE = """
{
    "requestId": "89faa887-1598-40c3-84ef-0049942c0f85",
    "code": "Success",
    "message": "调用成功",
    "data": null
}
"""

# 1.18.7 POST /private-images/import (the response is cut short in the
# reference; its fields up to minRam are kept, the envelope is closed)
IMPORT_REQUEST = """
{
    "departmentId": "1813606081461485577",
    "resourceGroupId": "",
    "name": "导入镜像",
    "minDisk": 10,
    "minRam": 1024,
    "cpuArch": "x86",
    "diskFormat": "qcow2",
    "osType": "linux",
    "usage": "ecs",
    "platform": "CCLinux",
    "instruction": "32-bits",
    "imageSource": 1,
    "imageUrl": "https://10.253.6.101/CeaKE/zhangyuhe/kylinv10sp3-20240228-k8s.qcow2",
    "tenantId": "1813606081461485576",
    "region": "region0",
    "visibility": "private",
    "osVersion": "v2",
    "volumeImages": [
        {
            "imageUrl": "https://10.253.6.101/CeaKE/zhangyuhe/kylinv10sp3-20240228-k8s.qcow2",
            "minDisk": 10
        }
    ]
}
"""
IMPORT_RESPONSE = """
{
    "requestId": "26698ae0-4d13-40a2-90c6-233da9e1b2fb",
    "code": "Success",
    "message": "调用成功",
    "data": {
        "createdAt": "2024-04-02T12:30:35.203Z",
        "updatedAt": "2024-04-02T12:30:35.203Z",
        "id": 218,
        "imageId": "img-gy4vuyga35szng",
        "imageType": "whole_image",
        "name": "导入测试",
        "status": "saving",
        "diskFormat": "qcow2",
        "owner": "1813606081461485576",
        "minDisk": 1,
        "minRam": 1024
    }
}
"""

# 1.19.7 GET /private-images/img-kvvfk28fcjc0mt/oss-bucket-list
LIST_EXPORT_BUCKETS = """
{
  "requestId": "25c4c6da-538d-400e-800b-8efcec612b84",
  "code": "Success",
  "message": "调用成功",
  "data": [
    {
      "azId": "AZ0",
      "cellId": "ecs49",
      "name": "hello1"
    },
    {
      "azId": "AZ0",
      "cellId": "ecs49",
      "name": "hello2"
    }
  ]
}
"""

# 1.20.7 POST /custom-images/img-wr17xc4linx9po/export
EXPORT_REQUEST = """
{
    "bucket": {
        "name": "iaas-image-8e10bee109d043b8b97141c5c3c8da93",
        "azId": "AZ0",
        "cellId": "ecs49"
    }
}
"""
EXPORT_RESPONSE = """
{
    "requestId": "89faa887-1598-40c3-84ef-0049942c0f85",
    "code": "Success",
    "message": "调用成功",
    "data": null

}
"""

# 1.21.7 POST /shared-images/img-share-ebgqhlf7j4061fjx2bku/copy (two blocks joined)
COPY_REQUEST = """
{
    "tenantId": "1845802001481407751",
    "departmentId": "1845802001481407752",
    "resourceGroupId": "1855053812545355776",
    "name": "名称",
    "description": "描述"
}
"""
COPY_RESPONSE = """
{
    "requestId": "89faa887-1598-40c3-84ef-0049942c0f85",
    "code": "Success",
    "message": "调用成功",
    "data": {
        "createdAt": "2024-07-14T15:28:54.537Z",
        "updatedAt": "2024-07-14T15:28:54.537Z",
        "id": 179,
        "imageId": "img-1w0x82kpybroot",
        "imageType": "os_image",
        "name": "siri-001",
        "bootMode": "BIOS",
        "status": "saving",
        "diskFormat": "qcow2",
        "owner": "1855918346378345324",
        "minDisk": 5,
        "minRam": 512,
        "cpuArch": "x86",
        "osType": "linux",
        "platform": "CCLinux",
        "usage": "ecs",
        "describe": "siri-describe",
        "instructions": "64-bits",
        "uploadId": "",
        "imageTags": null,
        "visibility": "private",
        "departmentId": "1855918346378345325",
        "resourceGroupId": "",
        "osVersion": "vcirros",
        "position": "",
        "sourceType": "",
        "shared": false,
        "capacityPercentage": "",
        "volumeImages": null,
        "errMessage": "",
        "tenantName": "",
        "departmentName": "",
        "resourceGroupName": ""
    }
}
"""

# Section 2: every error code (HTTP 400 unless noted).
ERROR_CODES: list[str] = [
    "IMG.InvalidParameter",
    "IMG.DBGet.Fail",
    "IMG.DBUpdate.Fail",
    "IMG.DBGet.NoData",
    "IMG.Internal.Error",
    "IMG.OperationFailed.ImageSize",
    "IMG.OperationFailed.UploadError",
    "IMG.OperationDenied.ActionNotMatchStatus",
    "IMG.OperationFailed.MinDiskSize",
    "IMG.OperationFailed.UploadNotAllowed",
    "IMG.OperationFailed.DownloadNotAllowed",
    "IMG.OperationFailed.DownloadNotallowed",
    "IMG.OperationFailed.DeleteNotAllowed",
    "IMG.OperationFailed.UploadNotPermission",
    "IMG.OperationFailed.UserInfo",
    "IMG.OperationDenied.Identity",
    "IMG.OperationDenied.Quota",
    "IMG.OperationDenied.QuotaNotEnough",
    "IMG.OperationDenied.QuotaDeduct",
    "IMG.OperationFailed.Transfer",
    "IMG.OperationDenied.AuthFail",
    "IMG.OperationFailed.ResourceCenter",
    "IMG.OperationFailed.ModifyMinDiskSize",
    "IMG.OperationFailed.ActionNotMatch",
    "IMG.OperationFailed.DuplicateUserId",
    "IMG.OperationFailed.InvalidUserId",
    "IMG.OperationFailed.AlreadyShared",
    "IMG.OperationFailed.NotShared",
    "IMG.OperationFailed.ResourceInfo",
    "IMG.OperationFailed.ResourceStatus",
    "IMG.OperationFailed.ImageIsShared",
]


def load(text: str) -> Any:
    """A fresh decoded copy of one example."""
    return json.loads(text)


def error_envelope(code: str, message: str = "参数错误", request_id: str = "req-err-1") -> Any:
    return {"requestId": request_id, "code": code, "message": message, "data": None}

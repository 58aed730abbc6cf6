"""Books (upload a PDF to index, list, remove) and the indexing jobs that uploads start."""

from __future__ import annotations

import json
import re
import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from server.dependencies import Admin, ServicesDep, User
from server.errors import ERROR_RESPONSES, ApiError
from server.pages import BOOK_ID
from server.protocol import BookList, BookOut, DeletedBook, JobOut
from server.uploads import safe_file_name, save_upload

BOOKS_PATH = "/v1/books"  # also the path with the larger body limit (max_upload_bytes)
_JOB_ID = re.compile(r"[0-9a-f]{32}")

router = APIRouter(tags=["books"], responses=ERROR_RESPONSES)


@router.post(BOOKS_PATH, response_model=JobOut, status_code=202,
             summary="Upload a PDF textbook (admin); indexing runs in the background, see /v1/jobs/{id}.")
async def add_book(
    file: Annotated[UploadFile, File(description="The PDF.")],
    services: ServicesDep,
    principal: Admin,
    title: Annotated[str, Form(max_length=500)] = "",
    edition: Annotated[str, Form(max_length=200)] = "",
    license: Annotated[str, Form(max_length=200)] = "",
    organ_systems: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
) -> JobOut:
    job_id = uuid.uuid4().hex
    target = services.uploads_dir / job_id / safe_file_name(file.filename)
    await run_in_threadpool(save_upload, file, target, services.settings.max_upload_bytes)
    meta = {"title": title, "edition": edition, "license": license, "organ_systems": [o for o in organ_systems if o]}
    job = services.jobs.create(target.name, target, json.dumps(meta), job_id=job_id)
    services.metrics.jobs_queued.inc()
    services.worker.submit(job_id)
    return job


@router.get(BOOKS_PATH, response_model=BookList)
async def list_books(services: ServicesDep, principal: User) -> BookList:
    books = await run_in_threadpool(services.index.books)
    return BookList(books=[BookOut(**book.model_dump()) for book in books])


@router.delete(BOOKS_PATH + "/{book_id}", response_model=DeletedBook)
async def delete_book(book_id: str, services: ServicesDep, principal: Admin) -> DeletedBook:
    if not BOOK_ID.fullmatch(book_id):
        raise ApiError(404, "no such book", "not_found")
    removed = await run_in_threadpool(services.index.remove_book, book_id)
    if not removed:
        raise ApiError(404, "no such book", "not_found")
    return DeletedBook(book_id=book_id)


@router.get("/v1/jobs/{job_id}", response_model=JobOut)
async def get_job(job_id: str, services: ServicesDep, principal: User) -> JobOut:
    job = services.jobs.get(job_id) if _JOB_ID.fullmatch(job_id) else None
    if job is None:
        raise ApiError(404, "no such job", "not_found")
    return job

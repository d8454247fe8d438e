// Uploads one file with tus-js-client, as a Node.js application would, and
// tells the test what happened, one JSON object per line on stdout:
//
//   {"event": "request", "method": ..., "url": ..., "offset": ..., "concat": ...}
//   {"event": "response", "method": ..., "url": ..., "status": ..., "offset": ..., "location": ...}
//   {"event": "progress", "sent": ..., "total": ...}     (every 10 MiB, and at the end)
//   {"event": "success", "url": ...} or {"event": "error", "message": ...}   (the last line)
//
// Settings come from the environment:
//   TUS_ENDPOINT  the creation URL (…/incoming/frontend/uploads/)
//   TUS_FILE      the file to upload
//   TUS_TICKET    the upload ticket (Upload-Metadata key "ticket")
//   TUS_PARALLEL  number of parallel partial uploads (default 1: no concatenation)
//   TUS_CHUNK_SIZE  bytes per PATCH (default: the whole rest of the file in one)

import fs from 'node:fs'
import path from 'node:path'

import tus from 'tus-js-client'

const env = process.env
const file = env.TUS_FILE
const size = fs.statSync(file).size
const parallel = Number(env.TUS_PARALLEL || 1)
const PROGRESS_STEP = 10 * 1024 * 1024

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`)
}

const options = {
  endpoint: env.TUS_ENDPOINT,
  metadata: {
    ticket: env.TUS_TICKET,
    filename: path.basename(file),
    filetype: 'application/octet-stream',
  },
  onBeforeRequest(req) {
    emit({
      event: 'request',
      method: req.getMethod(),
      url: req.getURL(),
      offset: req.getHeader('Upload-Offset') ?? null,
      concat: req.getHeader('Upload-Concat') ?? null,
    })
  },
  onAfterResponse(req, res) {
    emit({
      event: 'response',
      method: req.getMethod(),
      url: req.getURL(),
      status: res.getStatus(),
      offset: res.getHeader('Upload-Offset') ?? null,
      location: res.getHeader('Location') ?? null,
    })
  },
  onProgress(sent, total) {
    if (Math.floor(sent / PROGRESS_STEP) > Math.floor(lastSent / PROGRESS_STEP) || sent === total) {
      emit({ event: 'progress', sent, total })
    }
    lastSent = sent
  },
  onSuccess() {
    emit({ event: 'success', url: upload.url })
  },
  onError(error) {
    emit({ event: 'error', message: String(error) })
    process.exitCode = 1
  },
}
if (parallel > 1) {
  options.parallelUploads = parallel
  // The partial uploads need the ticket too.
  options.metadataForPartialUploads = { ticket: env.TUS_TICKET }
}
if (env.TUS_CHUNK_SIZE) {
  options.chunkSize = Number(env.TUS_CHUNK_SIZE)
}

let lastSent = 0
const upload = new tus.Upload(fs.createReadStream(file), options)
emit({ event: 'start', size })
upload.start()

//! `strackt-test-s3 --port P --access-key K --secret-key S ROOT`: s3s-fs serving ROOT on
//! 127.0.0.1:P with signature checks, and empty `delimiter=` queries treated as absent.

use std::path::PathBuf;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3Request, S3Response, S3Result, S3};
use s3s_fs::FileSystem;

struct Fixed(FileSystem);

/// The whole impl is generated, so `async_trait` sees every method (it runs before macros
/// inside an impl would expand).
macro_rules! forward {
    ($($name:ident($input:ty) -> $output:ty;)*) => {
        #[async_trait::async_trait]
        impl S3 for Fixed {
            $(
                async fn $name(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.0.$name(req).await
                }
            )*

            async fn list_objects(&self, mut req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
                if req.input.delimiter.as_deref() == Some("") {
                    req.input.delimiter = None;
                }
                self.0.list_objects(req).await
            }

            async fn list_objects_v2(&self, mut req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
                if req.input.delimiter.as_deref() == Some("") {
                    req.input.delimiter = None;
                }
                self.0.list_objects_v2(req).await
            }
        }
    };
}

forward! {
    create_bucket(CreateBucketInput) -> CreateBucketOutput;
    copy_object(CopyObjectInput) -> CopyObjectOutput;
    delete_bucket(DeleteBucketInput) -> DeleteBucketOutput;
    delete_object(DeleteObjectInput) -> DeleteObjectOutput;
    delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput;
    get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput;
    get_object(GetObjectInput) -> GetObjectOutput;
    head_bucket(HeadBucketInput) -> HeadBucketOutput;
    head_object(HeadObjectInput) -> HeadObjectOutput;
    list_buckets(ListBucketsInput) -> ListBucketsOutput;
    put_object(PutObjectInput) -> PutObjectOutput;
    create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput;
    upload_part(UploadPartInput) -> UploadPartOutput;
    upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput;
    list_parts(ListPartsInput) -> ListPartsOutput;
    complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput;
    abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput;
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: strackt-test-s3 --port P --access-key K --secret-key S ROOT";
    let port: u16 = arg(&args, "--port").ok_or(usage)?.parse()?;
    let (ak, sk) = (arg(&args, "--access-key").ok_or(usage)?, arg(&args, "--secret-key").ok_or(usage)?);
    let root = PathBuf::from(args.last().ok_or(usage)?);
    let mut builder = S3ServiceBuilder::new(Fixed(FileSystem::new(root).map_err(|e| format!("{e:?}"))?));
    builder.set_auth(SimpleAuth::from_single(ak, sk));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let http = ConnBuilder::new(TokioExecutor::new());
    loop {
        let (socket, _) = listener.accept().await?;
        let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

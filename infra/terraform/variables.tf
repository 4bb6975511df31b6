variable "project" {
  description = "The Google Cloud project to deploy into."
  type        = string
}
